"""Prometheus metrics of one API process (prometheus-client), on its own registry.

Request latency is measured by an ASGI middleware (a streamed answer counts until its last byte);
answer metrics come from each AskResult; database gauges (queue, documents, chunks, the last audit
chain check) are read from app.services.monitoring when /metrics is scraped, not on a timer.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Histogram("kb_http_request_duration_seconds", "HTTP request latency until the last byte",
                                  ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.retrieval = Histogram("kb_retrieval_seconds", "Hybrid search time of a question",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("kb_time_to_first_token_seconds", "Question received to first generated token",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("kb_generated_tokens", "Tokens generated for answers", ["model"], registry=r)
        self.tokens_per_s = Histogram("kb_generation_tokens_per_second", "Decoding speed of an answer",
                                      buckets=(1, 2, 5, 10, 20, 40, 80, 160, 320), registry=r)
        self.answers = Counter("kb_answers", "Questions answered, by outcome (answered, refused, error)",
                               ["outcome", "model"], registry=r)
        self.refused = Counter("kb_answers_refused", "Questions kb declined for lack of relevant passages",
                               registry=r)
        self.rejected = Counter("kb_answers_rejected", "Questions refused with 503: generator queue full",
                                registry=r)
        self.pending = Gauge("kb_generator_queue_depth", "Questions being answered or waiting for the generator",
                             registry=r)
        self.capacity = Gauge("kb_generator_queue_capacity", "api.max_pending_answers", registry=r)
        self.rate_limited = Counter("kb_rate_limited", "Requests refused with 429", registry=r)
        self.auth_failures = Counter("kb_auth_failures", "Requests refused with 401", registry=r)

    def observe_answer(self, res) -> None:
        model = res.model or "none"
        t = res.timings or {}
        if t.get("retrieval_ms") is not None:
            self.retrieval.observe(t["retrieval_ms"] / 1000)
        if t.get("first_token_ms") is not None:
            self.first_token.observe(t["first_token_ms"] / 1000)
        if t.get("tokens_per_s"):
            self.tokens_per_s.observe(t["tokens_per_s"])
        if res.tokens:
            self.tokens.labels(model).inc(res.tokens)
        self.answers.labels("refused" if res.refused else "answered", model).inc()
        if res.refused:
            self.refused.inc()

    def install_gauges(self, read) -> None:
        """``read()`` returns (monitoring.Gauges | None, generator status dict | None) at scrape time."""
        self.registry.register(_SystemCollector(read))


class _SystemCollector:
    def __init__(self, read) -> None:
        self.read = read

    def describe(self):
        return []  # not known before the first scrape; prometheus-client then skips the up-front check

    def collect(self):
        try:
            g, pool = self.read()
        except Exception:
            log.warning("reading the database gauges failed", exc_info=True)
            g, pool = None, None
        up = GaugeMetricFamily("kb_database_gauges_ok", "1 when the database gauges below could be read")
        up.add_metric([], 0 if g is None else 1)
        yield up
        if g is not None:
            jobs = GaugeMetricFamily("kb_ingest_jobs", "Ingestion jobs by state (queued, running)", labels=["state"])
            for state in ("queued", "running"):
                jobs.add_metric([state], g.jobs.get(state, 0))
            yield jobs
            age = GaugeMetricFamily("kb_ingest_oldest_queued_seconds", "Age of the oldest queued ingestion job")
            age.add_metric([], g.oldest_queued_s)
            yield age
            docs = GaugeMetricFamily("kb_documents", "Documents (newest versions) by status", labels=["status"])
            for status, n in sorted(g.documents.items()):
                docs.add_metric([status], n)
            yield docs
            chunks = GaugeMetricFamily("kb_chunks", "Chunks in the database")
            chunks.add_metric([], g.chunks)
            yield chunks
            chain = GaugeMetricFamily("kb_audit_chain_ok", "Last audit chain verification in this process: 1 ok, "
                                      "0 broken, -1 not run yet")
            chain.add_metric([], -1 if g.audit_ok is None else int(g.audit_ok))
            yield chain
            if g.audit_checked_at is not None:
                at = GaugeMetricFamily("kb_audit_chain_checked_timestamp_seconds", "When it was last verified")
                at.add_metric([], g.audit_checked_at)
                yield at
        if pool:
            active = GaugeMetricFamily("kb_generator_active", "1 for the generator now answering (failover pool)",
                                       labels=["generator"])
            healthy = GaugeMetricFamily("kb_generator_healthy", "1 when the generator passed its last health check",
                                        labels=["generator"])
            for m in pool["members"]:
                active.add_metric([m["name"]], int(m["name"] == pool["active"]))
                healthy.add_metric([m["name"]], int(m["healthy"]))
            yield active
            yield healthy


class LatencyMiddleware:
    """ASGI middleware: one histogram sample per request, labelled by route template and status."""

    def __init__(self, app, metrics: ApiMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def timed_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(status["code"])).observe(
                time.perf_counter() - t0)
