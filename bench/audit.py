"""Audit log cost: append latency per record, and `verify` / search speed at 100k records.

    .venv/bin/python bench/audit.py [--records 100k] [--sample 500] [--database-url URL] [--json]

Without --database-url it uses a fresh SQLite file in a temporary folder; with a PostgreSQL URL
the database must be empty (the bench migrates it). Records look like real questions: a sealed
question (~100 chars) and answer (~600 chars), 8 retrieved chunk ids with scores, timings.

1. `append` at an empty log: `--sample` records, each in its own transaction (as `kb ask` does).
2. Fill to `--records`: the same hash chain and sealing as `append`, inserted in bulk (labelled as
   such: it is the setup, not the measurement).
3. `append` again at full size: the head lookup is indexed, so the cost should not grow.
4. `verify` over the whole chain (records/s), and `query(contains=...)`, which must open every
   sealed payload it scans.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select  # noqa: E402

from app import audit  # noqa: E402
from app.models import AuditRecord  # noqa: E402
from app.services import auditing  # noqa: E402
from app.services.caller import Caller  # noqa: E402
from app.services.container import Container  # noqa: E402
from app.services.setup import init  # noqa: E402
from app.settings import Settings  # noqa: E402

ACTOR = audit.Actor("bench-user", "staff", "api")
AUDITOR = Caller("bench-auditor", "auditor", "cli")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "km" else text) * mult)


def record_fields(i: int) -> tuple[dict, dict]:
    details = {
        "retrieved": [{"chunk_id": 1000 + 17 * i + j, "document_id": 50 + j, "score": round(0.9 - j * 0.05, 4),
                       "dense": round(0.8 - j * 0.04, 4)} for j in range(8)],
        "citations": [1, 3], "cited_chunks": [1000 + 17 * i, 1000 + 17 * i + 2], "invalid_citations": [],
        "refused": False, "model": "SmolLM2-135M-Instruct-Q4_K_M.gguf", "model_sha256": "ab" * 32,
        "timings": {"retrieval_ms": 12.5, "first_token_ms": 180.2, "generation_ms": 2100.0, "tokens_per_s": 45.0},
        "tokens": 96,
    }
    sealed = {"question": f"How many days of annual leave does policy {i} grant to part-time staff in year two?",
              "answer": ("Part-time staff accrue leave pro rata to their contracted hours [1]. " * 9).strip(),
              "refusal_reason": None, "error": None}
    return details, sealed


def timed_appends(c: Container, n: int, start: int) -> list[float]:
    out = []
    for i in range(start, start + n):
        details, sealed = record_fields(i)
        t = time.perf_counter()
        with c.sessions.begin() as s:
            audit.append(s, c.vault, kind="query", action="ask", actor=ACTOR, details=details, sealed=sealed)
        out.append((time.perf_counter() - t) * 1000)
    return out


def bulk_fill(c: Container, upto: int, batch: int = 5000) -> float:
    """Extend the chain to `upto` records with the hashing and sealing of `append`, inserted in bulk."""
    t0 = time.perf_counter()
    with c.sessions.begin() as s:
        last = s.execute(select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)).one()
        dek_id, dek = audit.audit_key(s, c.vault)
    seq, prev = last
    key = audit.chain_key(c.vault.ring)
    while seq < upto:
        rows = []
        with c.sessions.begin() as s:
            for _ in range(min(batch, upto - seq)):
                seq += 1
                details, sealed = record_fields(seq)
                payload = c.vault.seal(dek, json.dumps(sealed, ensure_ascii=False), "audit_log", seq, dek_id)
                rec = AuditRecord(seq=seq, kind="query", action="ask", created_at=datetime.now(UTC),
                                  actor=ACTOR.name, actor_role=ACTOR.role, client=ACTOR.client, target=None,
                                  outcome="ok", details=details, dek_id=dek_id, payload_sealed=payload, prev_hash=prev)
                prev = audit.link_hash(key, prev, rec)
                rows.append({k: getattr(rec, k) for k in (*audit.HASHED_FIELDS, "prev_hash")} | {"hash": prev})
            s.execute(insert(AuditRecord.__table__), rows)
    return time.perf_counter() - t0


def summary(ms: list[float]) -> dict:
    q = statistics.quantiles(ms, n=20)
    return {"n": len(ms), "mean_ms": round(statistics.fmean(ms), 3), "p50_ms": round(statistics.median(ms), 3),
            "p95_ms": round(q[18], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="100k", help="Chain length for verify and search (default 100k).")
    ap.add_argument("--sample", type=int, default=500, help="Appends timed one per transaction, at each end.")
    ap.add_argument("--database-url", help="An empty database (default: a temporary SQLite file).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    total = parse_size(args.records)

    tmp = tempfile.TemporaryDirectory(prefix="kb-bench-audit-")
    data = Path(tmp.name)
    os.environ.pop("KB_MASTER_KEY", None)
    url = args.database_url or f"sqlite:///{data / 'kb.sqlite3'}"
    c = Container(Settings(data_dir=data, database={"url": url}))
    init(c, "admin", "bench-password-1")

    result: dict = {"database": c.engine.dialect.name, "records": total, "cipher": c.cipher.name}
    result["append_at_start"] = summary(timed_appends(c, args.sample, 0))
    fill_s = bulk_fill(c, total - args.sample)
    result["bulk_fill_s"] = round(fill_s, 1)
    result["append_at_full_size"] = summary(timed_appends(c, args.sample, total))

    with c.sessions() as s:
        rep = audit.verify_checked(s, c.vault)
    assert rep.ok, rep
    result["verify"] = {"checked": rep.checked, "seconds": rep.seconds, "records_per_s": rep.records_per_s}

    t = time.perf_counter()
    hits = auditing.query(c, AUDITOR, contains="policy 4242 grant", limit=50)
    scan_s = time.perf_counter() - t
    t = time.perf_counter()
    page = auditing.query(c, AUDITOR, limit=50)
    assert len(page) == 50
    page_ms = (time.perf_counter() - t) * 1000
    result["search_contains"] = {"scanned": rep.checked, "hits": len(hits), "seconds": round(scan_s, 2),
                                 "records_per_s": round(rep.checked / scan_s, 1)}
    result["newest_page_of_50_ms"] = round(page_ms, 1)
    c.engine.dispose()
    tmp.cleanup()

    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"audit log on {result['database']} ({result['cipher']}), {total:,} records")
    for key in ("append_at_start", "append_at_full_size"):
        a = result[key]
        print(f"  {key:22} mean {a['mean_ms']:.2f} ms  p50 {a['p50_ms']:.2f} ms  p95 {a['p95_ms']:.2f} ms  "
              f"(n={a['n']}, one record per transaction)")
    v = result["verify"]
    print(f"  verify                 {v['checked']:,} records in {v['seconds']:.2f} s = {v['records_per_s']:,.0f} "
          "records/s")
    sc = result["search_contains"]
    print(f"  query(contains=...)    {sc['scanned']:,} opened in {sc['seconds']:.2f} s = "
          f"{sc['records_per_s']:,.0f} records/s ({sc['hits']} hit)")
    print(f"  newest page of 50      {result['newest_page_of_50_ms']:.1f} ms")
    print(f"  (setup: bulk fill of the chain took {result['bulk_fill_s']} s)")


if __name__ == "__main__":
    main()
