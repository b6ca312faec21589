"""A long-lived search replica for tests/ops/test_replicas.py: one Container for its whole life, driven
by lines on stdin, answering one JSON line each. Configured by KB_ variables like any kb process."""

from __future__ import annotations

import json
import sys

from app.services.container import Container
from app.services.search import hydrate
from app.settings import Settings


def main() -> None:
    c = Container(Settings())
    index = c.search_index
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "search":
            hits = index.search(arg, 3, None)
            with c.sessions() as s:
                out = [p.source for p in hydrate(c, s, hits)]
        elif cmd == "count":
            out = len(index)
        elif cmd == "snap":  # write this many snapshots, as fast as possible
            for _ in range(int(arg)):
                index._dirty = True
                index.save_snapshot(force=True)
            out = "ok"
        else:
            out = f"unknown command {cmd}"
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
