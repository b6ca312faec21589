"""Metrics against hand-computed values, and the BEIR loaders on a small generated corpus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from retrieval.metrics import (
    evaluate,
    load_beir_corpus,
    load_beir_queries,
    load_qrels,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

HITS = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
RELS = {"b": 1, "d": 2, "e": 0}


def test_ndcg_hand_computed() -> None:
    dcg = 1 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(HITS, RELS, 3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(HITS, RELS, 1) == 0.0
    assert ndcg_at_k([("d", 1.0), ("b", 0.5)], RELS, 10) == pytest.approx(1.0)
    # ranking uses scores, not list order
    assert ndcg_at_k([("b", 0.1), ("d", 0.9)], RELS, 10) == pytest.approx(1.0)


def test_recall_and_mrr_hand_computed() -> None:
    assert recall_at_k(HITS, RELS, 3) == pytest.approx(0.5)
    assert recall_at_k(HITS, RELS, 1) == 0.0
    assert mrr_at_k(HITS, RELS, 3) == pytest.approx(0.5)
    assert mrr_at_k(HITS, RELS, 1) == 0.0
    assert mrr_at_k([("d", 1.0)], RELS, 1) == 1.0


def test_evaluate_means_over_judged_queries() -> None:
    run = {"q1": HITS, "q3": [("x", 1.0)]}
    qrels = {"q1": RELS, "q2": {"z": 1}, "q3": {"y": 0}}  # q2 missing from the run, q3 has no relevant doc
    out = evaluate(run, qrels, ["recall@3", "mrr@3"])
    assert out == {"recall@3": pytest.approx(0.25), "mrr@3": pytest.approx(0.25)}
    with pytest.raises(ValueError, match="Unknown metric"):
        evaluate(run, qrels, ["map@10"])


def test_beir_loaders(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "T", "text": "body"}) + "\n" + json.dumps({"_id": 2, "text": "x"}) + "\n",
        encoding="utf-8",
    )
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what?"}) + "\n", encoding="utf-8")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\t2\t0\n", encoding="utf-8")
    assert load_beir_corpus(tmp_path / "corpus.jsonl") == {
        "d1": {"title": "T", "text": "body"},
        "2": {"title": "", "text": "x"},
    }
    assert load_beir_queries(tmp_path / "queries.jsonl") == {"q1": "what?"}
    assert load_qrels(tmp_path / "qrels.tsv") == {"q1": {"d1": 1, "2": 0}}
