"""Ingestion throughput through the real pipeline (parse -> scrub PII -> chunk -> embed -> write),
with the share of time per stage.

Stages overlap as they do in `kb ingest --wait`: files are queued while earlier ones are indexed, and
one batch is embedded while the next is prepared, so the shares add up to more than 100%.

    .venv/bin/python bench/ingest.py --fixtures ../shared/data/doc_fixtures \
        --scifact ../shared/data/beir_scifact/corpus.jsonl [--limit N] [--no-pii] [--json]
    .venv/bin/python bench/ingest.py --cmrc ../shared/data/cmrc2018/squad-style-data/cmrc2018_dev.json \
        --limit 200 [--no-chinese-ner]      # Chinese text: the cost of the Chinese name CRF
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the `ingest` package; run as a script, its folder would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
# Each run uses a fresh data folder; the compiled embedder is kept where the tests keep it (built once).
os.environ.setdefault("KB_RETRIEVAL__EMBED_CACHE_DIR", str(Path.home() / ".cache" / "kb-models" / "embedders"))

from app.services.container import Container  # noqa: E402
from app.services.evaluation import write_corpus  # noqa: E402
from app.services.setup import init  # noqa: E402
from app.settings import Settings  # noqa: E402
from ingest.submit import submit_paths  # noqa: E402
from ingest.worker import Worker  # noqa: E402
from retrieval.metrics import load_beir_corpus  # noqa: E402


def run(label: str, folder: Path, pii: bool, chinese_ner: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", database={"url": None},
                            pii={"enabled": pii, "chinese_ner": chinese_ner})
        c = Container(settings)
        init(c, "admin", "bench-admin-password")
        c.embedder.dim, c.scrubber.analyze("warm up the models")  # model loading is not ingestion
        t0 = time.perf_counter()
        worker = Worker(c)
        finish = worker.start_draining()  # as `kb ingest --wait`: indexing starts while files are queued
        items = list(submit_paths(c, [folder], "bench"))
        t_queue = time.perf_counter() - t0
        finish()
        total = time.perf_counter() - t0
        times = worker.times
        stages = {"queue (seal originals)": t_queue, **dict(times.seconds)}
        return {
            "corpus": label, "files": len(items), "indexed": times.documents, "chunks": times.chunks,
            "seconds": round(total, 1), "files_per_s": round(len(items) / total, 1),
            "chunks_per_s": round(times.chunks / total, 1), "pii": pii, "chinese_ner": pii and chinese_ner,
            "stage_share": {k: f"{100 * v / total:.0f}%" for k, v in stages.items()},
            "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, help="a folder of real documents")
    ap.add_argument("--scifact", type=Path, help="BEIR corpus.jsonl")
    ap.add_argument("--limit", type=int, help="only the first N SciFact documents")
    ap.add_argument("--cmrc", type=Path, help="CMRC2018 (SQuAD-style) JSON: its distinct contexts, one file each")
    ap.add_argument("--no-pii", action="store_true", help="turn PII scrubbing off (for comparison)")
    ap.add_argument("--no-chinese-ner", action="store_true", help="PII on, but without the Chinese name CRF")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    if args.fixtures:
        rows.append(run(f"fixtures ({args.fixtures.name})", args.fixtures, not args.no_pii))
    if args.scifact:
        corpus = load_beir_corpus(args.scifact)
        if args.limit:
            corpus = dict(list(corpus.items())[: args.limit])
        with tempfile.TemporaryDirectory() as tmp:
            write_corpus(corpus, Path(tmp) / "scifact")
            rows.append(run(f"scifact ({len(corpus)} docs)", Path(tmp) / "scifact", not args.no_pii))
    if args.cmrc:
        data = json.loads(args.cmrc.read_text(encoding="utf-8"))
        contexts = list(dict.fromkeys(p["context"] for a in data["data"] for p in a["paragraphs"]))
        contexts = contexts[: args.limit] if args.limit else contexts
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "cmrc"
            folder.mkdir()
            for i, text in enumerate(contexts):
                (folder / f"ctx{i:05d}.txt").write_text(text, encoding="utf-8")
            rows.append(run(f"cmrc2018 ({len(contexts)} contexts)", folder, not args.no_pii, not args.no_chinese_ner))
    info = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if args.json:
        print(json.dumps({**info, "results": rows}, indent=2))
        return
    for r in rows:
        print(f"{r['corpus']}: {r['files']} files, {r['indexed']} indexed, {r['chunks']} chunks in {r['seconds']} s "
              f"-> {r['files_per_s']} files/s, {r['chunks_per_s']} chunks/s (PII {'on' if r['pii'] else 'off'})")
        print("  stages: " + ", ".join(f"{k} {r['stage_seconds'][k]} s ({v})" for k, v in r["stage_share"].items()))
    print(f"machine: {info['machine']}, {info['cores']} cores, peak RSS {info['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
