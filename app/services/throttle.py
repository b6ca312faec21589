"""Failed sign-ins counted per client address and per (account, address), in this process.

app.services.session decides with these counts, before the account's own lockout, so that
- one address that fails often is refused for every account (password spraying, and nobody can lock
  out `admin` from elsewhere by failing: the real admin's own address stays clean), and
- the "locked" answer depends only on what this address did to this name, never on whether the
  account exists.

The counts live in memory (a sliding window): each process (UI, API) keeps its own, so an attacker
facing both gets each limit once per process; restarting a process forgets them. The account's
lockout in the database (users.locked_until) is the cross-process limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque

_MAX_KEYS = 100_000  # a flood of distinct addresses or names cannot grow memory without bound


class FailureCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[tuple[str, ...], deque[float]] = {}

    def _live(self, key: tuple[str, ...], window_s: float, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - window_s:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def count(self, key: tuple[str, ...], window_s: float, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._live(key, window_s, now)
            return len(events) if events else 0

    def add(self, key: tuple[str, ...], window_s: float, now: float | None = None) -> int:
        """Record one failure; returns the count within the window, this one included."""
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._live(key, window_s, now)
            if events is None:
                if len(self._events) >= _MAX_KEYS:
                    self._events.pop(next(iter(self._events)))  # the oldest key goes
                events = self._events[key] = deque()
            events.append(now)
            return len(events)

    def clear(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._events.pop(key, None)


_counters: dict[str, FailureCounter] = {}  # by database URL: one process may serve several (tests do)
_counters_lock = threading.Lock()


def counter_for(container) -> FailureCounter:
    with _counters_lock:
        return _counters.setdefault(container.settings.database_url, FailureCounter())


def address_key(client: str | None) -> tuple[str, ...]:
    return ("addr", client or "-")


def pair_key(name: str, client: str | None) -> tuple[str, ...]:
    return ("pair", name.casefold(), client or "-")
