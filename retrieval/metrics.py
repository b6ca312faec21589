"""Retrieval metrics (nDCG@k, recall@k, MRR@k) and BEIR file loaders.

Conventions follow BEIR / pytrec_eval: linear gains (rel), ideal DCG from the judged documents,
recall over documents with rel > 0; queries in qrels that the run lacks score 0; the mean is
over queries that have at least one relevant document.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

Run = Mapping[str, Sequence[tuple[str, float]]]
Qrels = Mapping[str, Mapping[str, int]]


def _ranked(hits: Sequence[tuple[str, float]], k: int) -> list[str]:
    ordered = sorted(hits, key=lambda h: -h[1])  # stable: equal scores keep the run's order
    seen: set[str] = set()
    out = []
    for doc, _ in ordered:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
        if len(out) == k:
            break
    return out


def ndcg_at_k(hits: Sequence[tuple[str, float]], rels: Mapping[str, int], k: int) -> float:
    dcg = sum(rels.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(_ranked(hits, k)))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(hits: Sequence[tuple[str, float]], rels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_ranked(hits, k))) / len(relevant)


def mrr_at_k(hits: Sequence[tuple[str, float]], rels: Mapping[str, int], k: int) -> float:
    for i, doc in enumerate(_ranked(hits, k)):
        if rels.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


_METRICS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k}


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str] = ("ndcg@10", "recall@100", "mrr@10")) -> dict[str, float]:
    """Mean of each metric (names like ``ndcg@10``) over queries with a relevant document."""
    parsed = []
    for name in metrics:
        base, _, k = name.partition("@")
        if base not in _METRICS or not k.isdigit():
            raise ValueError(f"Unknown metric {name!r}; use ndcg@K, recall@K or mrr@K.")
        parsed.append((name, _METRICS[base], int(k)))
    qids = [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]
    out = {}
    for name, fn, k in parsed:
        total = sum(fn(run.get(q, ()), qrels[q], k) for q in qids)
        out[name] = total / len(qids) if qids else 0.0
    return out


# ---- BEIR loaders -------------------------------------------------------------------------------


def load_beir_corpus(path: str | Path) -> dict[str, dict[str, str]]:
    """corpus.jsonl -> {doc id: {"title": ..., "text": ...}}."""
    corpus = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                corpus[str(row["_id"])] = {"title": row.get("title") or "", "text": row.get("text") or ""}
    return corpus


def load_beir_queries(path: str | Path) -> dict[str, str]:
    """queries.jsonl -> {query id: text}."""
    queries = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = row["text"]
    return queries


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """qrels tsv with a header line (query-id, corpus-id, score) -> {qid: {docid: rel}}."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)
        for row in reader:
            if len(row) >= 3:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels
