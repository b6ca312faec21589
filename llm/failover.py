"""A pool of generators tried in order: e.g. a remote OpenAI-compatible pool first, the in-process
llama.cpp model as the fallback.

* A request goes to the first member that is up. If that member fails before its first token, the
  request is retried on the next one at once (the user still gets an answer) and the failure counts.
* After ``failures_to_switch`` consecutive failures (errors or timeouts, of requests or of health
  checks) a member is down: requests skip it, so they no longer pay its timeout.
* A health check runs every ``check_every_s`` in a background thread (started with the first request);
  a member that passes it is up again, so the pool switches back to it by itself.
* ``model_name`` / ``model_sha256`` name the member that answered this thread's last request (the
  audit record's ``model``), else the member that would answer now; ``status()`` feeds /metrics.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from app.errors import KbError
from llm.repetition import AnswerStream
from llm.types import ChatMessage, Generator

log = logging.getLogger(__name__)
Probe = Callable[[], bool]


def http_probe(base_url: str, api_key: str | None = None, timeout: float = 5.0) -> Probe:
    """Healthy when ``GET <base_url>/models`` answers 200 within ``timeout`` (llama.cpp server, vLLM)."""
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def probe() -> bool:
        req = urllib.request.Request(url, headers=headers)  # noqa: S310 - an http(s) URL from settings
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                return resp.status == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False

    return probe


@dataclass
class Member:
    name: str
    generator: Generator
    probe: Probe | None = None  # None: never checked (in-process models are up unless they fail)
    failures: int = 0
    down: bool = False
    answered: int = 0
    last_error: str | None = None
    switched_at: float | None = field(default=None, repr=False)


class FailoverGenerator:
    def __init__(self, members: list[Member], failures_to_switch: int = 3, check_every_s: float = 30.0):
        if not members:
            raise ValueError("a failover pool needs at least one generator")
        self.members = members
        self.failures_to_switch = max(1, failures_to_switch)
        self.check_every_s = check_every_s
        self._lock = threading.Lock()
        self._local = threading.local()
        self._checker: threading.Thread | None = None
        self._stop = threading.Event()

    # --- which member -------------------------------------------------------------------------
    @property
    def active(self) -> Member:
        """The member that gets the next request: the first one up (the last one when all are down)."""
        with self._lock:
            return next((m for m in self.members if not m.down), self.members[-1])

    def _current(self) -> Member:
        return getattr(self._local, "member", None) or self.active

    @property
    def model_name(self) -> str:
        return self._current().generator.model_name

    @property
    def model_sha256(self) -> str | None:
        return self._current().generator.model_sha256

    @property
    def think_prefilled(self) -> bool:
        return bool(getattr(self._current().generator, "think_prefilled", False))

    @property
    def context_window(self) -> int:
        return self.active.generator.context_window

    def count_tokens(self, text: str) -> int:
        return self.active.generator.count_tokens(text)

    # --- health --------------------------------------------------------------------------------
    def _failed(self, m: Member, why: str) -> None:
        with self._lock:
            m.failures += 1
            m.last_error = why
            if not m.down and m.failures >= self.failures_to_switch:
                m.down, m.switched_at = True, time.time()
                log.warning("generator %s is down after %d consecutive failures (%s); switching to the next",
                            m.name, m.failures, why)

    def _succeeded(self, m: Member) -> None:
        with self._lock:
            if m.down:
                log.warning("generator %s is healthy again; switching back", m.name)
                m.switched_at = time.time()
            m.failures, m.down, m.last_error = 0, False, None

    def check(self) -> None:
        """One round of health checks (the background thread calls this every check_every_s)."""
        for m in self.members:
            if m.probe is None:
                continue
            try:
                ok = m.probe()
            except Exception as exc:  # a probe must not kill the checker
                ok, why = False, type(exc).__name__
            else:
                why = "health check failed"
            if ok:
                self._succeeded(m)
            else:
                self._failed(m, why)

    def _ensure_checker(self) -> None:
        if self._checker is not None or self.check_every_s <= 0 or not any(m.probe for m in self.members):
            return
        with self._lock:
            if self._checker is None:
                self._checker = threading.Thread(target=self._check_loop, name="kb-generator-health", daemon=True)
                self._checker.start()

    def _check_loop(self) -> None:
        while not self._stop.wait(self.check_every_s):
            self.check()

    def close(self) -> None:
        self._stop.set()

    def status(self) -> dict:
        active = self.active
        with self._lock:
            return {"active": active.name, "members": [
                {"name": m.name, "model": m.generator.model_name, "healthy": not m.down, "failures": m.failures,
                 "answered": m.answered, "last_error": m.last_error} for m in self.members]}

    # --- generating ----------------------------------------------------------------------------
    def stream(self, messages: list[ChatMessage], max_tokens: int, temperature: float) -> AnswerStream:
        """The first healthy member's answer; each member applies its own loop guard, so none is added here,
        and the member's finish reason is passed on."""
        return AnswerStream(self._deltas(messages, max_tokens, temperature), None)

    def _deltas(self, messages: list[ChatMessage], max_tokens: int, temperature: float) -> Iterator[str]:
        self._ensure_checker()
        with self._lock:
            order = [m for m in self.members if not m.down] + [m for m in self.members if m.down]
        errors: list[str] = []
        for m in order:
            self._local.member = m
            started = False
            try:
                member_stream = m.generator.stream(messages, max_tokens, temperature)
                for delta in member_stream:
                    started = True
                    yield delta
            except GeneratorExit:
                raise
            except Exception as exc:
                why = str(exc) if isinstance(exc, KbError) else type(exc).__name__
                self._failed(m, why)
                if started:  # text is out already: another member cannot take over mid-answer
                    raise
                log.warning("generator %s failed before its first token (%s); trying the next", m.name, why)
                errors.append(f"{m.name}: {why}")
                continue
            self._succeeded(m)
            with self._lock:
                m.answered += 1
            return getattr(member_stream, "finish_reason", None)
        raise KbError("Every generator failed: " + "; ".join(errors))
