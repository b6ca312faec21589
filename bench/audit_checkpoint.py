"""What the audit head checkpoint costs per append: the same appends with and without the CheckpointStore.

    .venv/bin/python bench/audit_checkpoint.py [--n 150]

One question record per transaction (as `kb ask` does) on a fresh SQLite data dir, alternating
rounds with the checkpoint (HMAC + locked write + fsync + rename of keys/audit-head/*.json) and
without it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import audit  # noqa: E402
from app.services.container import Container  # noqa: E402
from app.services.setup import init  # noqa: E402
from app.settings import Settings  # noqa: E402

ACTOR = audit.Actor("bench-user", "staff", "api")


def appends(c: Container, n: int) -> tuple[float, float]:
    ms = []
    for i in range(n):
        t = time.perf_counter()
        with c.sessions.begin() as s:
            audit.append(s, c.vault, kind="query", action="ask", actor=ACTOR, details={"i": i},
                         sealed={"question": "q" * 100, "answer": "a" * 600})
        ms.append((time.perf_counter() - t) * 1000)
    return round(statistics.mean(ms), 1), round(statistics.median(ms), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=150)
    args = ap.parse_args()
    c = Container(Settings(data_dir=Path(tempfile.mkdtemp(prefix="kb-bench-"))))
    init(c, "admin", "bench-password-1")
    store = audit.checkpoint_store(c.vault)
    assert store is not None
    for _ in range(2):
        print("with checkpoint    mean/p50 ms:", *appends(c, args.n))
        audit._stores.pop(c.vault)
        print("without checkpoint mean/p50 ms:", *appends(c, args.n))
        audit.use_checkpoints(c.vault, store)


if __name__ == "__main__":
    main()
