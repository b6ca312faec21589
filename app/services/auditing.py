"""The auditor's view of the audit log: filtered listing, one record with its passages, CSV, chain checks.

The listing, detail and verification functions live in app.audit; this module adapts them for the
page, keeps the time and result of the last chain check for every session of the process, and says
plainly when the installed app.audit does not provide them yet.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app import audit
from app.errors import KbError
from app.services.search import Passage, hydrate
from retrieval.types import SearchHit

NOT_AVAILABLE = ("The query log viewer needs the audit query functions (app.audit.query / get / verify), "
                 "which this installation does not have yet. `kb audit` on the server may help meanwhile.")


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None
    last_seq: int | None
    seconds: float
    at: float  # time.time() of the check


_last_checks: dict[str, ChainCheck] = {}  # by database URL: one process may serve several (tests do)
_check_lock = threading.Lock()


def available() -> bool:
    return all(hasattr(audit, f) for f in ("query", "get", "verify"))


def _require() -> None:
    if not available():
        raise KbError(NOT_AVAILABLE)


def entries(container, viewer: tuple[str, str], *, actor: str | None = None, since: datetime | None = None,
            until: datetime | None = None, contains: str | None = None, kind: str | None = None,
            limit: int = 200, offset: int = 0) -> list[Any]:
    _require()
    with container.sessions() as s:
        return list(audit.query(s, container.vault, actor=actor or None, since=since, until=until,
                                contains=contains or None, kind=kind or None, limit=limit, offset=offset,
                                viewer=viewer))


def entry(container, viewer: tuple[str, str], seq: int) -> Any:
    _require()
    with container.sessions() as s:
        return audit.get(s, container.vault, seq, viewer=viewer)


def retrieved_passages(container, details: dict[str, Any]) -> list[tuple[dict[str, Any], Passage | None]]:
    """Each retrieved chunk of a query record with its text today (None when the chunk was deleted since)."""
    retrieved = [r for r in (details or {}).get("retrieved", []) if isinstance(r, dict) and "chunk_id" in r]
    if not retrieved:
        return []
    hits = [SearchHit(int(r["chunk_id"]), float(r.get("score") or 0.0), r.get("dense"), None) for r in retrieved]
    with container.sessions() as s:
        found = {p.chunk_id: p for p in hydrate(container, s, hits)}
    return [(r, found.get(int(r["chunk_id"]))) for r in retrieved]


def verify(container) -> ChainCheck:
    """Verify the whole chain now and remember the result for every session of this process."""
    _require()
    with _check_lock, container.sessions() as s:
        t0 = time.perf_counter()
        rep = audit.verify(s)
        check = ChainCheck(bool(rep.ok), int(rep.checked), rep.first_bad_seq, rep.problem, rep.last_seq,
                           float(getattr(rep, "seconds", None) or time.perf_counter() - t0), time.time())
        _last_checks[container.settings.database_url] = check
        return check


def last_check(container) -> ChainCheck | None:
    return _last_checks.get(container.settings.database_url)


def export_csv(container, viewer: tuple[str, str], **filters: Any) -> tuple[bytes, int]:
    """CSV of every record matching ``filters`` (oldest first) and how many rows it has."""
    _require()
    buf = io.StringIO()
    with container.sessions() as s:
        n = audit.export(s, container.vault, "csv", buf, viewer=viewer,
                         **{k: v for k, v in filters.items() if v is not None})
    return buf.getvalue().encode("utf-8-sig"), n  # the BOM makes spreadsheet programs read UTF-8
