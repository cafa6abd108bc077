"""Service settings: every field is an environment variable (``R2EC_<NAME>``) and a ``r2ec serve`` flag."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from r2ec.engine.settings import EngineFields

TENANT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def parse_tenant_keys(entries: list[str]) -> list[tuple[str, str]]:
    """(key, tenant name) per ``tenant_keys`` entry ``tenant:key`` (the key is everything after the first ``:``)."""
    out: list[tuple[str, str]] = []
    for entry in entries:
        name, sep, key = entry.partition(":")
        if not sep or not TENANT_NAME.fullmatch(name) or not key:
            raise ValueError("tenant_keys entries are tenant:key, the tenant 1-64 of letters, digits and _.-")
        out.append((key, name))
    return out


class Settings(BaseSettings, EngineFields):
    """The engine fields come from ``EngineFields`` (one definition); the service overrides two defaults."""

    model_config = SettingsConfigDict(env_prefix="R2EC_", extra="ignore")
    _ring: list[tuple[str, str | None]] = PrivateAttr(default_factory=list)

    # what to serve
    bundle: Path | None = Field(None, description="Bundle directory; empty = the demo bundle (built on first use).")
    verify_bundle: bool = Field(True, description="Check every bundle checksum at start.")
    # engine (its other fields: EngineFields)
    backend: Literal["auto", "transformers", "vllm"] = Field(  # type: ignore[assignment]  # auto: selection
        "auto",
        description="Inference backend: auto (vLLM, falling back to transformers if it cannot start), vllm or "
        "transformers.",
    )
    dtype: str | None = Field(  # type: ignore[assignment]  # None: auto
        None,
        description="Model dtype: float32, bfloat16, float16; empty or auto = bfloat16 where it pays on this device "
        "(a bf16 GPU, AMX, Arm BF16; AVX512-BF16 alone where its products measured as fast as float32's), else the "
        "bundle's (generation.dtype).",
    )
    threads: int | None = Field(None, description="Torch CPU threads (default: all cores).")
    max_queue: int = Field(64, description="Requests admitted beyond which /v1/recommend answers 429.")
    index_device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Where the FAISS index lives: auto (a GPU if FAISS has one), cpu or gpu."
    )
    # HTTP
    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8000, description="Bind port.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated bearer keys for /v1; each is a tenant of its own (with tenant_keys empty too: "
        "no auth).",
    )
    tenant_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated `tenant:key` bearer keys for /v1, the tenant 1-64 of letters, digits and `_.-`: "
        "user contexts and cached results belong to a tenant, so the keys of one tenant (a rotation) share them.",
    )
    legacy_user_tenant: str | None = Field(
        None,
        description="A tenant of tenant_keys that adopts the user contexts stored in Redis before contexts were "
        "kept per tenant: each moves into that tenant's keys when the tenant first reads, writes or deletes it. "
        "Empty = they stay unreachable.",
    )
    max_body_bytes: int = Field(1 << 20, description="Largest accepted request body (413 beyond).")
    request_timeout_s: float = Field(120.0, description="Deadline per request (504 beyond).")
    drain_timeout_s: float = Field(30.0, description="On SIGTERM, how long in-flight requests may finish.")
    keep_alive_s: float = Field(5.0, description="Idle keep-alive connections are closed after this long.")
    header_timeout_s: float = Field(10.0, description="A request's headers must arrive within this (else closed).")
    body_timeout_s: float = Field(30.0, description="A request's body must arrive within this (else 408).")
    max_header_bytes: int = Field(
        64 << 10,
        ge=1024,
        description="Largest request line + headers of a request (431 and closed beyond; checked per read, so "
        "headers that end in the read crossing it still pass): httptools and uvicorn set no limit of their own.",
    )
    max_connections: int = Field(
        512,
        description="Concurrent connections beyond which new requests get 503 (too_many_connections); /health, "
        "/ready and /metrics are answered past it, so that held connections cannot fail the probes.",
    )
    # API limits and defaults
    default_k: int = Field(10, description="Items returned when k is not given.")
    max_k: int = Field(100, description="Largest k accepted.")
    default_reasoning_tokens: int | None = Field(
        None, description="Reasoning budget when a request gives none; empty = the bundle's (generation)."
    )
    max_reasoning_tokens: int = Field(
        1024, description="Largest reasoning budget accepted (also bounded by max_model_len minus the prompt cap)."
    )
    max_history: int = Field(500, description="Most history events accepted per request.")
    # caches
    redis_url: str | None = Field(None, description="redis://host:port/db; empty = in-process cache.")
    redis_timeout_s: float = Field(0.25, description="Redis socket timeout; a slow Redis degrades, never blocks.")
    cache_ttl_s: int = Field(3600, description="TTL of cached reasoning + user vectors.")
    cache_size: int = Field(10000, description="Entries of the in-process cache.")
    reply_cache_size: int = Field(
        4096,
        description="Whole replies kept in process for repeated requests whose reply depends only on their bytes "
        "(deterministic, no user_id, no clock-dependent ages); 0 = off.",
    )
    user_events_cap: int = Field(200, description="Events kept per user context (oldest dropped).")
    user_ttl_s: int = Field(0, description="TTL of a user context in seconds (0 = none).")
    local_users_max: int = Field(
        100_000,
        ge=1,
        description="Users the in-process user store keeps (no Redis); the least recently used go beyond.",
    )
    # ops
    log_level: str = Field("info", description="Log level.")

    @field_validator("api_keys", "tenant_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):  # an env var or a flag: a comma list
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @model_validator(mode="after")
    def _keyring(self) -> Settings:
        """Every key once, with its tenant name (None: a bare key); checked at start, not at the first request."""
        ring: list[tuple[str, str | None]] = [(k, None) for k in self.api_keys]
        ring += parse_tenant_keys(self.tenant_keys)
        keys = [k for k, _ in ring]
        if len(set(keys)) != len(keys):
            raise ValueError("a bearer key appears twice in api_keys / tenant_keys")
        named = {name for _, name in ring if name is not None}
        if self.legacy_user_tenant is not None and self.legacy_user_tenant not in named:
            raise ValueError("legacy_user_tenant must be a tenant of tenant_keys")
        self._ring = ring
        return self

    @property
    def keyring(self) -> list[tuple[str, str | None]]:
        """(key, tenant name or None for a bare key) of every bearer key; empty = auth off."""
        return self._ring

    @field_validator(
        "bundle", "redis_url", "legacy_user_tenant", "threads", "dtype", "default_reasoning_tokens", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value
