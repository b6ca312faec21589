"""End-to-end answer latency through kb (ACL -> hybrid search -> prompt -> llama.cpp stream -> citation
check -> audit record) for N questions over an ingested SciFact sample: p50/p95 of retrieval, time to
first token, tokens/s and total. kb's overhead over calling llama.cpp directly is bench/answer_direct.py.

    .venv/bin/python bench/answer.py --corpus ../shared/data/beir_scifact [--docs 300] [--questions 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services import qa  # noqa: E402
from app.services.container import Container  # noqa: E402
from app.services.evaluation import write_corpus  # noqa: E402
from app.services.setup import init  # noqa: E402
from app.settings import Settings  # noqa: E402
from ingest.submit import submit_paths  # noqa: E402
from ingest.worker import Worker  # noqa: E402
from llm.models import pull_default  # noqa: E402
from retrieval.metrics import load_beir_corpus, load_beir_queries, load_qrels  # noqa: E402


def pct(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="BEIR SciFact folder")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--models-cache", type=Path, default=Path.home() / ".cache" / "kb-models")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    corpus = dict(list(load_beir_corpus(args.corpus / "corpus.jsonl").items())[: args.docs])
    qrels = load_qrels(args.corpus / "qrels" / "train.tsv")
    queries = load_beir_queries(args.corpus / "queries.jsonl")
    asked = [queries[q] for q, rel in qrels.items() if any(d in corpus for d in rel)][: args.questions]
    model = pull_default(args.models_cache)
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        c = Container(Settings(data_dir=Path(tmp) / "data", database={"url": None}))
        init(c, "admin", "bench-admin-password")
        shutil.copy(model.path, c.settings.models_dir / model.path.name)
        shutil.copy(model.path.parent / "manifest.json", c.settings.models_dir / "manifest.json")
        write_corpus(corpus, Path(tmp) / "corpus")
        list(submit_paths(c, [Path(tmp) / "corpus"], "bench"))
        Worker(c).run_once()
        caller = qa.caller_for(c, None, "api")
        qa.ask_blocking(c, caller, asked[0])  # warm: models loaded, index built
        results = [qa.ask_blocking(c, caller, q) for q in asked]
    t = [r.timings for r in results]
    answered = [r for r in results if not r.refused]
    summary = {
        "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "model": model.name,
        "documents": len(corpus), "questions": len(results), "refused": len(results) - len(answered),
        "with_citations": sum(bool(r.citations) for r in answered),
        "retrieval_ms": {"p50": pct([x["retrieval_ms"] for x in t], 0.5),
                         "p95": pct([x["retrieval_ms"] for x in t], 0.95)},
        "first_token_ms": {"p50": pct([x.get("first_token_ms") for x in t], 0.5),
                           "p95": pct([x.get("first_token_ms") for x in t], 0.95)},
        "tokens_per_s": {"median": round(statistics.median([x["tokens_per_s"] for x in t if x.get("tokens_per_s")]), 1)
                         if any(x.get("tokens_per_s") for x in t) else None},
        "total_ms": {"p50": pct([x["total_ms"] for x in t], 0.5), "p95": pct([x["total_ms"] for x in t], 0.95)},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['questions']} questions over {summary['documents']} SciFact abstracts, model {model.name}, "
          f"{summary['cores']} cores")
    print(f"  refused {summary['refused']}, answered with citations {summary['with_citations']}")
    for k in ("retrieval_ms", "first_token_ms", "total_ms"):
        print(f"  {k:15} p50 {summary[k]['p50']:>9}  p95 {summary[k]['p95']:>9}")
    print(f"  tokens/s median {summary['tokens_per_s']['median']}")


if __name__ == "__main__":
    main()
