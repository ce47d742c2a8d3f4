"""The server's Prometheus metrics (`GET /metrics`), kept with `prometheus_client` in a registry
of the server's own (two servers in one process, as in the tests, do not mix their counts).

    mavis_requests_total{route,status}          HTTP requests answered (499: the client went
                                                away first, while sending or waiting)
    mavis_request_latency_seconds{route}        from request to the end of the response
    mavis_prompt_tokens_total                   prompt tokens admitted
    mavis_generated_tokens_total                tokens generated
    mavis_batch_size                            rows in the running batch
    mavis_queue_length                          rows waiting to join it
    mavis_step_batch_size                       rows per decoding step (histogram)
    mavis_cancelled_rows_total                  rows freed because their client went away
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The counters, gauges and histograms of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("mavis_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("mavis_request_latency_seconds",
                                 "Seconds from a request's arrival to the end of its response",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.prompt_tokens = Counter("mavis_prompt_tokens", "Prompt tokens admitted",
                                     registry=registry)
        self.generated_tokens = Counter("mavis_generated_tokens", "Tokens generated",
                                        registry=registry)
        self.batch_size = Gauge("mavis_batch_size", "Rows in the running batch",
                                registry=registry)
        self.queue_length = Gauge("mavis_queue_length", "Rows waiting to join the batch",
                                  registry=registry)
        self.step_batch = Histogram("mavis_step_batch_size", "Rows per decoding step",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.cancelled_rows = Counter("mavis_cancelled_rows",
                                      "Rows freed because their client went away",
                                      registry=registry)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware counting each HTTP request by route and status, and timing it to the
    end of its response (a stream's last chunk). Paths outside `routes` count as "other", so
    that scanners cannot grow the label set."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: frozenset[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500
        start = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
