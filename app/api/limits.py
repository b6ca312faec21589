"""Transport limits: request body size (413), requests per key (429), pending answers (503)."""

from __future__ import annotations

import math
import threading
import time

from starlette.exceptions import HTTPException

from app.api.errors import ApiError, respond


class RateLimiter:
    """A token bucket per API key: ``per_minute`` requests at once, refilled evenly over a minute."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, at)
        self._lock = threading.Lock()

    def check(self, key_id: int | None) -> None:
        if self.per_minute <= 0 or key_id is None:
            return
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / rate)
                raise ApiError(429, "rate_limited", f"This API key made more than {self.per_minute} requests in a "
                               f"minute (api.rate_limit_per_minute); retry in {wait} s.", {"Retry-After": str(wait)})
            self._buckets[key_id] = (tokens - 1.0, now)


class AnswerSlots:
    """At most ``capacity`` questions being answered or waiting for the generator; one more is refused
    at once (503 with Retry-After) rather than queued without bound."""

    def __init__(self, capacity: int, retry_after_s: int):
        self.capacity = max(1, capacity)
        self.retry_after_s = retry_after_s
        self._sem = threading.BoundedSemaphore(self.capacity)
        self._lock = threading.Lock()
        self.in_use = 0
        self.rejected = 0

    def acquire(self) -> None:
        if not self._sem.acquire(blocking=False):
            with self._lock:
                self.rejected += 1
            raise ApiError(503, "overloaded", f"kb is answering {self.capacity} questions already "
                           f"(api.max_pending_answers); retry in {self.retry_after_s} s.",
                           {"Retry-After": str(self.retry_after_s)})
        with self._lock:
            self.in_use += 1

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._sem.release()


class BodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over the cap, and for a body that grows past it."""

    def __init__(self, app, max_bytes: int, limit_mb: float):
        self.app, self.max_bytes, self.limit_mb = app, max_bytes, limit_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        from app.api.errors import too_large

        err = too_large(self.limit_mb)
        await respond(err.status, err.kind, err.message, {"Connection": "close"})(scope, receive, send)


class _TooLarge(HTTPException):
    """Raised inside body parsing; an HTTPException, so FastAPI passes it through to the JSON handler."""

    def __init__(self) -> None:
        super().__init__(413, "The request is larger than the api.max_request_mb limit.")
