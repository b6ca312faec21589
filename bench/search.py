"""Query latency, approximate-search recall and memory of the retrieval indexes.

    .venv/bin/python bench/search.py [--sizes 10k,100k,1M] [--queries 200] [--threads 2] [--json]

Vectors are synthetic 384-d unit vectors with structure like real embeddings (a 48-d latent space
projected up plus noise; pure uniform noise would have no meaningful neighbours); queries are
perturbed copies of stored vectors. "total" adds the measured embedding time of a real query with
the real model to each search. BM25 runs on synthetic Zipf-distributed text at the BM25 sizes.
Recall@10 of HNSW is measured against exact inner-product search on the same vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 384


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "km" else text) * mult)


def synthetic_vectors(n: int, rng: np.random.Generator, latent: int = 48) -> np.ndarray:
    proj = np.random.default_rng(12345).standard_normal((latent, DIM)).astype(np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        z = rng.standard_normal((m, latent)).astype(np.float32)
        block = z @ proj + 0.3 * np.sqrt(latent) * rng.standard_normal((m, DIM)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def queries_near(vecs: np.ndarray, q: int, rng: np.random.Generator) -> np.ndarray:
    base = vecs[rng.choice(vecs.shape[0], size=q, replace=False)]
    noisy = base + 0.06 * rng.standard_normal(base.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def pct(times: list[float]) -> tuple[float, float]:
    arr = np.asarray(times) * 1000
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def embed_times(n: int) -> list[float]:
    from retrieval.embedder import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    emb.embed_query("warm up")
    rng = np.random.default_rng(1)
    sentence = "how does the policy on remote work apply to contractors in the finance team during audits"
    words = sentence.split()
    times = []
    for _ in range(n):
        text = " ".join(rng.choice(words, size=rng.integers(5, 14)))
        t0 = time.perf_counter()
        emb.embed_query(text)
        times.append(time.perf_counter() - t0)
    return times


def bench_dense(n: int, nq: int, ef_values: list[int], embed: list[float], hnsw_max: int) -> list[dict]:
    from retrieval.dense import FaissIndex

    rng = np.random.default_rng(n)
    vecs = synthetic_vectors(n, rng)
    ids = np.arange(n, dtype=np.int64) * 3 + 17
    qs = queries_near(vecs, nq, rng)
    rows = []
    flat = FaissIndex(DIM, kind="flat")
    t0 = time.perf_counter()
    flat.add(ids, vecs)
    build = time.perf_counter() - t0
    truth = [[i for i, _ in flat.search(q, 10)] for q in qs[: min(nq, 100)]]
    times = []
    for q in qs:
        t0 = time.perf_counter()
        flat.search(q, 10)
        times.append(time.perf_counter() - t0)
    p50, p95 = pct(times)
    tot50, tot95 = pct([t + e for t, e in zip(times, embed, strict=False)])
    rows.append(dict(index="flat", size=n, param="exact", build_s=build, p50_ms=p50, p95_ms=p95,
                     total_p50_ms=tot50, total_p95_ms=tot95, recall10=1.0,
                     bytes_per_chunk=len(flat.to_bytes()) / n))
    # filtered search (ACL allows 10% of chunks) on the exact index
    allowed = ids[rng.choice(n, size=max(n // 10, 1), replace=False)]
    times = []
    for q in qs[:50]:
        t0 = time.perf_counter()
        flat.search(q, 10, allowed=allowed)
        times.append(time.perf_counter() - t0)
    p50, p95 = pct(times)
    rows.append(dict(index="flat+acl10%", size=n, param="exact", build_s=0.0, p50_ms=p50, p95_ms=p95,
                     total_p50_ms=p50 + pct(embed)[0], total_p95_ms=p95 + pct(embed)[1], recall10=1.0,
                     bytes_per_chunk=float("nan")))
    del flat
    ivf_settings = [(f"nprobe={p}", "ivf_nprobe", p) for p in (16, 32, 64)]
    rows += bench_approx("ivf", n, ids, vecs, qs, truth, embed, ivf_settings)
    if n > hnsw_max:
        return rows
    hnsw_settings = [(f"M=32,ef={ef}", "ef_search", ef) for ef in ef_values]
    return rows + bench_approx("hnsw", n, ids, vecs, qs, truth, embed, hnsw_settings)


def bench_approx(kind: str, n: int, ids: np.ndarray, vecs: np.ndarray, qs: np.ndarray, truth: list,
                 embed: list[float], settings: list[tuple[str, str, int]]) -> list[dict]:
    """Build one approximate index, then for each (label, attribute, value) setting measure recall@10
    against exact search and query latency. IVF builds fast; HNSW takes many minutes at 1M."""
    from retrieval.dense import FaissIndex

    index = FaissIndex(DIM, kind=kind)
    t0 = time.perf_counter()
    index.add(ids, vecs)
    build = time.perf_counter() - t0
    size_bytes = len(index.to_bytes())
    rows = []
    for label, attr, value in settings:
        setattr(index, attr, value)
        found = [[i for i, _ in index.search(q, 10)] for q in qs[: len(truth)]]
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))
        times = []
        for q in qs:
            t0 = time.perf_counter()
            index.search(q, 10)
            times.append(time.perf_counter() - t0)
        p50, p95 = pct(times)
        tot50, tot95 = pct([t + e for t, e in zip(times, embed, strict=False)])
        rows.append(dict(index=kind, size=n, param=label, build_s=build, p50_ms=p50, p95_ms=p95,
                         total_p50_ms=tot50, total_p95_ms=tot95, recall10=recall, bytes_per_chunk=size_bytes / n))
        build = 0.0
    return rows


def bench_bm25(n: int, nq: int) -> dict:
    from retrieval.lexical import BM25Index

    rng = np.random.default_rng(7)
    vocab = np.array([f"t{i}" for i in range(60_000)])
    weights = 1.0 / np.arange(1, vocab.size + 1) ** 1.05
    weights /= weights.sum()
    index = BM25Index()
    t0 = time.perf_counter()
    batch = 5_000
    for start in range(0, n, batch):
        m = min(batch, n - start)
        words = rng.choice(vocab, size=(m, 150), p=weights)
        index.add(range(start, start + m), [" ".join(row) for row in words])
    build = time.perf_counter() - t0
    queries = [" ".join(rng.choice(vocab[:20_000], size=int(rng.integers(3, 9)))) for _ in range(nq)]
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q, 100)
        times.append(time.perf_counter() - t0)
    p50, p95 = pct(times)
    return dict(index="bm25", size=n, param="k1=0.9,b=0.4", build_s=build, p50_ms=p50, p95_ms=p95,
                total_p50_ms=p50, total_p95_ms=p95, recall10=float("nan"),
                bytes_per_chunk=len(index.to_bytes()) / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10k,100k,1M", help="Comma-separated chunk counts (10k, 100k, 1M).")
    ap.add_argument("--bm25-sizes", default="10k,100k")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef", default="64,96,128", help="HNSW efSearch values to try.")
    ap.add_argument("--hnsw-max", default="1M", help="Skip HNSW above this size.")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for FAISS and torch.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    embed = embed_times(args.queries)
    e50, e95 = pct(embed)
    rows = [dict(index="embed query", size=0, param="MiniLM-L6", build_s=0.0, p50_ms=e50, p95_ms=e95,
                 total_p50_ms=e50, total_p95_ms=e95, recall10=float("nan"), bytes_per_chunk=float("nan"))]
    for size in [parse_size(s) for s in args.sizes.split(",") if s]:
        rows += bench_dense(size, args.queries, [int(e) for e in args.ef.split(",")], embed, parse_size(args.hnsw_max))
    for size in [parse_size(s) for s in args.bm25_sizes.split(",") if s]:
        rows.append(bench_bm25(size, args.queries))
    if args.json:
        print(json.dumps({"threads": args.threads, "peak_rss_mb": rss_mb(), "rows": rows}, indent=2))
        return
    print(f"threads={args.threads}  peak RSS {rss_mb():.0f} MB  (latencies in ms; total = + query embedding)")
    head = f"{'index':<12}{'size':>9} {'param':<16}{'build s':>9}{'p50':>8}{'p95':>8}{'tot p50':>9}{'tot p95':>9}"
    print(head + f"{'R@10':>7}{'B/chunk':>9}")
    for r in rows:
        print(f"{r['index']:<12}{r['size']:>9} {r['param']:<16}{r['build_s']:>9.1f}{r['p50_ms']:>8.2f}"
              f"{r['p95_ms']:>8.2f}{r['total_p50_ms']:>9.2f}{r['total_p95_ms']:>9.2f}{r['recall10']:>7.3f}"
              f"{r['bytes_per_chunk']:>9.0f}")


if __name__ == "__main__":
    main()
