"""Prometheus metrics (one registry per app, so tests and multiple apps never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("r2ec_requests", "HTTP requests by route and status.", ["route", "status"], registry=r)
        self.latency = Histogram(
            "r2ec_request_seconds", "End-to-end request latency.", ["route"], buckets=_LATENCY, registry=r
        )
        self.stage = Histogram(
            "r2ec_stage_seconds",
            "Latency per pipeline stage (queue, generation, capture, search).",
            ["stage"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens = Counter("r2ec_generated_tokens", "Reasoning tokens generated.", registry=r)
        self._tokens_seen = 0
        self.vectors = Counter(
            "r2ec_user_vectors",
            "User vectors by source: the generation's own last step (no second pass) or a capture pass.",
            ["source"],
            registry=r,
        )
        self._vectors_seen = {"generation": 0, "capture": 0}
        self.store_lost = Gauge(
            "r2ec_user_store_data_lost", "1 once the user store lost its data while this process ran.", registry=r
        )
        self.disconnects = Counter(
            "r2ec_client_disconnects", "Unary requests whose client hung up (work cancelled).", registry=r
        )
        self.cache = Counter("r2ec_cache_lookups", "Result cache lookups by outcome.", ["outcome"], registry=r)
        self.cache_up = Gauge("r2ec_cache_up", "1 when the cache backend answers, 0 when degraded.", registry=r)
        self.inflight = Gauge("r2ec_inflight_requests", "Recommend requests admitted and not finished.", registry=r)
        self.queue_depth = Gauge(
            "r2ec_queue_depth",
            "Admitted recommend requests per admission slot (scale-out signal for the HPA).",
            registry=r,
        )
        self.ready = Gauge("r2ec_ready", "1 when the service accepts /v1 traffic.", registry=r)
        self.engine_start = Gauge(
            "r2ec_engine_start_seconds", "How long the serving engine took to start.", ["backend", "dtype"], registry=r
        )

    def sync_tokens(self, engine_total: int) -> None:
        """Bring the token counter up to the engine's total (which counts aborted generations too)."""
        if engine_total > self._tokens_seen:
            self.tokens.inc(engine_total - self._tokens_seen)
            self._tokens_seen = engine_total

    def sync_vectors(self, totals: dict[str, int]) -> None:
        """Bring the user-vector counters up to the recommender's totals per source."""
        for source, total in totals.items():
            seen = self._vectors_seen.get(source, 0)
            if total > seen:
                self.vectors.labels(source=source).inc(total - seen)
                self._vectors_seen[source] = total
