"""Parse every file under a folder (default: the shared doc fixtures) and report outcomes and timing.

.venv/bin/python bench/parse.py [FOLDER] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.detect import detect_format  # noqa: E402
from ingest.parsers import parse  # noqa: E402
from ingest.types import IngestError  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "doc_fixtures"


def run(folder: Path) -> dict:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "MANIFEST.tsv")
    outcomes: Counter[str] = Counter()
    by_format: dict[str, Counter[str]] = {}
    crashes: list[str] = []
    slowest: list[tuple[float, str]] = []
    total_bytes = 0
    started = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        total_bytes += len(data)
        t0 = time.perf_counter()
        fmt = detect_format(data, path.name) or "unknown"
        try:
            doc = parse(data, path.name)
            outcome = "parsed"
            fmt = doc.format
        except IngestError as exc:
            outcome = str(exc.status)
        except Exception as exc:  # a bug: parsers must only raise IngestError
            outcome = "CRASH"
            crashes.append(f"{path.relative_to(folder)}: {exc!r}")
        slowest.append((time.perf_counter() - t0, str(path.relative_to(folder))))
        outcomes[outcome] += 1
        by_format.setdefault(fmt, Counter())[outcome] += 1
    seconds = time.perf_counter() - started
    slowest.sort(reverse=True)
    return {
        "folder": str(folder),
        "files": len(files),
        "bytes": total_bytes,
        "seconds": round(seconds, 3),
        "outcomes": dict(outcomes),
        "by_format": {k: dict(v) for k, v in sorted(by_format.items())},
        "slowest": [{"file": f, "seconds": round(s, 3)} for s, f in slowest[:5]],
        "crashes": crashes,
    }


def print_table(result: dict) -> None:
    statuses = sorted({s for counts in result["by_format"].values() for s in counts})
    width = max(len(s) for s in statuses) + 2
    print(f"{'format':<18}" + "".join(f"{s:>{width}}" for s in statuses))
    for fmt, counts in result["by_format"].items():
        print(f"{fmt:<18}" + "".join(f"{counts.get(s, 0):>{width}}" for s in statuses))
    print(f"{'total':<18}" + "".join(f"{result['outcomes'].get(s, 0):>{width}}" for s in statuses))
    print(
        f"\n{result['files']} files, {result['bytes'] / 1e6:.1f} MB in {result['seconds']:.2f} s "
        f"({result['files'] / max(result['seconds'], 1e-9):.0f} files/s)"
    )
    print("slowest: " + ", ".join(f"{s['file']} {s['seconds']:.2f}s" for s in result["slowest"]))
    for crash in result["crashes"]:
        print("CRASH", crash)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    result = run(args.folder)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
