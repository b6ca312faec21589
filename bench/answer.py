"""End-to-end answer speed through kb (ACL -> hybrid search -> prompt -> llama.cpp stream -> citation
check -> audit record) over an ingested SciFact sample, for each model, in two phases:

- idle: nothing else runs;
- ingesting: a worker thread embeds another batch of documents in the same process at the same time
  (the worker yields to answers between embedding sub-batches: app/foreground.py).

Per model and phase: time until the sources are shown, time to first token and total (p50/p95),
decode tokens/s (median). Models are interleaved question by question so a noisy machine slows them
alike. kb's overhead over calling llama.cpp directly is bench/answer_direct.py.

    .venv/bin/python bench/answer.py --corpus ../shared/data/beir_scifact [--model NAME ...]
        [--docs 300] [--questions 12] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services import qa  # noqa: E402
from app.services.container import Container  # noqa: E402
from app.services.evaluation import _eval_settings, write_corpus  # noqa: E402
from app.services.setup import init  # noqa: E402
from app.settings import Settings  # noqa: E402
from ingest.submit import submit_paths  # noqa: E402
from ingest.worker import Worker  # noqa: E402
from llm.models import SMALL_NAME, default_model_path  # noqa: E402
from llm.types import ChatMessage  # noqa: E402
from retrieval.metrics import load_beir_corpus, load_beir_queries, load_qrels  # noqa: E402


def pct(values: list[float | None], q: float) -> float | None:
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)


def ask_timed(c: Container, caller, question: str) -> dict:
    t0 = time.perf_counter()
    sources_ms, res = None, None
    for ev in qa.ask(c, caller, question):
        if ev.kind == "passages" and sources_ms is None:
            sources_ms = (time.perf_counter() - t0) * 1000
        elif ev.kind == "done":
            res = ev.result
    assert res is not None
    return {**res.timings, "sources_ms": sources_ms, "refused": res.refused, "cited": bool(res.citations)}


def summarize(rows: list[dict]) -> dict:
    rates = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    return {
        "questions": len(rows), "refused": sum(r["refused"] for r in rows),
        "sources_ms": {"p50": pct([r["sources_ms"] for r in rows], 0.5),
                       "p95": pct([r["sources_ms"] for r in rows], 0.95)},
        "first_token_s": {"p50": _s(pct([r.get("first_token_ms") for r in rows], 0.5)),
                          "p95": _s(pct([r.get("first_token_ms") for r in rows], 0.95))},
        "total_s": {"p50": _s(pct([r["total_ms"] for r in rows], 0.5)),
                    "p95": _s(pct([r["total_ms"] for r in rows], 0.95))},
        "tokens_per_s": round(statistics.median(rates), 1) if rates else None,
    }


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="BEIR SciFact folder")
    ap.add_argument("--models-dir", type=Path, default=Path("data/models"),
                    help="where `kb models pull` put the models (default: data/models)")
    ap.add_argument("--model", action="append", default=[],
                    help="a name from `kb models list`, repeatable (default: the default model and SmolLM2)")
    ap.add_argument("--docs", type=int, default=300, help="abstracts ingested before asking")
    ap.add_argument("--busy-docs", type=int, default=600, help="abstracts the worker ingests while asking")
    ap.add_argument("--questions", type=int, default=12, help="questions per model and phase")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    names = args.model or [None, SMALL_NAME]
    paths = list(dict.fromkeys(default_model_path(args.models_dir, n).resolve() for n in names))
    docs = list(load_beir_corpus(args.corpus / "corpus.jsonl").items())
    corpus, later = dict(docs[: args.docs]), dict(docs[args.docs: args.docs + args.busy_docs])
    qrels = load_qrels(args.corpus / "qrels" / "train.tsv")
    queries = load_beir_queries(args.corpus / "queries.jsonl")
    asked = [queries[q] for q, rel in qrels.items() if any(d in corpus for d in rel)][: 2 * args.questions]
    idle_qs, busy_qs = asked[: args.questions], asked[args.questions:]
    report: dict = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "documents": len(corpus), "models": {}}
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        base = _eval_settings(Settings(), Path(tmp))  # as `kb eval answers`: a throw-away kb, the real embedder
        c = Container(base)
        init(c, "admin", "bench-admin-password")
        write_corpus(corpus, Path(tmp) / "corpus")
        list(submit_paths(c, [Path(tmp) / "corpus"], "bench"))
        Worker(c).run_once()
        containers = {}
        for path in paths:
            mc = Container(base.model_copy(update={"llm": base.llm.model_copy(update={"model_path": path})}))
            for shared in ("engine", "sessions", "vault", "embedder", "search_index"):
                mc.__dict__[shared] = getattr(c, shared)
            list(mc.generator.stream([ChatMessage("user", "Hello")], 4, 0.0))  # loaded outside the timings
            containers[path.stem] = mc
        caller = qa.caller_for(c, None, "api")
        qa.ask_blocking(next(iter(containers.values())), caller, asked[0])  # warm: index built, query path compiled
        rows: dict[str, dict[str, list[dict]]] = {m: {"idle": [], "ingesting": []} for m in containers}
        for q in idle_qs:
            for m, mc in containers.items():
                rows[m]["idle"].append(ask_timed(mc, caller, q))
        write_corpus(later, Path(tmp) / "later")
        list(submit_paths(c, [Path(tmp) / "later"], "bench-later"))
        worker = threading.Thread(target=Worker(c).run_once, daemon=True)
        worker.start()
        for q in busy_qs:
            if not worker.is_alive():
                break
            for m, mc in containers.items():
                rows[m]["ingesting"].append(ask_timed(mc, caller, q))
        worker.join()
    for m in containers:
        report["models"][m] = {phase: summarize(r) for phase, r in rows[m].items() if r}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{len(corpus)} SciFact abstracts, {report['cores']} cores ({report['machine']})")
    for m, phases in report["models"].items():
        for phase, s in phases.items():
            print(f"{m:40} {phase:9} n={s['questions']:<3} sources p50 {s['sources_ms']['p50']} ms  "
                  f"TTFT p50 {s['first_token_s']['p50']} s p95 {s['first_token_s']['p95']} s  "
                  f"decode {s['tokens_per_s']} tok/s  total p50 {s['total_s']['p50']} s")


if __name__ == "__main__":
    main()
