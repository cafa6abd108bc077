"""``r2ec serve`` flags, generated from ``Settings`` so that every setting is both a flag and an env var."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Sequence
from typing import Any

from service.settings import Settings


def _is_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    args = typing.get_args(annotation)
    return bool(args) and all(a in (bool, type(None)) for a in args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r2ec serve",
        description="Serve a bundle over HTTP. Every flag is also an environment variable R2EC_<NAME>; "
        "flags win over the environment.",
    )
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "R2EC_" + name.upper()
        help_text = f"{field.description or ''} [env {env}; default {field.get_default(call_default_factory=True)!r}]"
        if _is_bool(field.annotation):
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=help_text)
    return parser


def parse_settings(argv: Sequence[str]) -> Settings:
    # Comma lists (api_keys, tenant_keys) are split by Settings' own validator, as for the env vars.
    return Settings(**vars(build_parser().parse_args(list(argv))))


__all__ = ["build_parser", "parse_settings"]
