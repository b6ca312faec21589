"""Relevance-gate calibration for multilingual-e5-small (per-language centered, as kb runs it).

    nice -n 10 .venv/bin/python bench/e5_gates.py --model ~/.cache/kb-models/multilingual-e5-small \
        --vectors /tmp/kb-multilingual   # passage vectors bench/multilingual.py cached (same sizes)

For each question language: the best similarity when the answer is in the collection (SciFact / CMRC2018
questions against their corpus; cross-language questions against their document) and when the collection is
about something else (the same questions against the other corpus, and against the 8 memos / notices of
bench/data/cross_language.jsonl in their own language). Prints percentiles and what a gate would keep.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.multilingual import load_sets  # noqa: E402
from retrieval.embedder import SentenceTransformerEmbedder, language_centered  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--vectors", type=Path, required=True)
    ap.add_argument("--scifact-queries", type=int, default=100)
    ap.add_argument("--scifact-docs", type=int, default=200)
    ap.add_argument("--cmrc-queries", type=int, default=100)
    ap.add_argument("--cmrc-docs", type=int, default=100)
    args = ap.parse_args()
    emb = SentenceTransformerEmbedder(str(args.model), "query: ", "passage: ", precision="fp32")
    means = emb.language_means
    sets = load_sets(args.data, args.scifact_queries, args.scifact_docs, args.cmrc_queries, args.cmrc_docs, 0)

    def corpus(name: str, lang: str) -> np.ndarray:
        f = sorted(args.vectors.glob(f"e5-{name}-*.npy"))[0]  # raw vectors of that set's chunks
        v = np.load(f)
        return language_centered(v, ["中文" if lang == "zh" else "en"] * len(v), means)

    sci, cmrc = corpus("scifact", "en"), corpus("cmrc", "zh")
    items = [json.loads(x) for x in (ROOT / "bench" / "data" / "cross_language.jsonl").read_text().splitlines()]
    memo = emb.embed_passages([it["text"] for it in items if it["lang"] == "en"])
    notice = emb.embed_passages([it["text"] for it in items if it["lang"] == "zh"])
    q_en = emb.embed_queries(list(sets["scifact"]["queries"].values()))
    q_zh = emb.embed_queries(list(sets["cmrc"]["queries"].values()))
    xd = emb.embed_passages([it["text"] for it in items])
    xq = emb.embed_queries([it["question"] for it in items])
    gold = np.sum(xd * xq, axis=1)
    q_lang = ["zh" if it["lang"] == "en" else "en" for it in items]
    x_en = gold[[i for i, x in enumerate(q_lang) if x == "en"]]
    x_zh = gold[[i for i, x in enumerate(q_lang) if x == "zh"]]
    rows = {
        "en answerable (SciFact)": (q_en @ sci.T).max(1),
        "en cross-language answerable (English question, Chinese doc)": x_en,
        "en off-topic, same language (SciFact question vs English memos)": (q_en @ memo.T).max(1),
        "en off-topic, other language (SciFact question vs CMRC)": (q_en @ cmrc.T).max(1),
        "zh answerable (CMRC)": (q_zh @ cmrc.T).max(1),
        "zh cross-language answerable (Chinese question, English doc)": x_zh,
        "zh off-topic, same language (CMRC question vs Chinese notices)": (q_zh @ notice.T).max(1),
        "zh off-topic, other language (CMRC question vs SciFact)": (q_zh @ sci.T).max(1),
    }
    for name, v in rows.items():
        p = np.percentile(v, [0, 5, 50, 95, 100])
        print(f"{name:<66} n={len(v):>3}  min {p[0]:.3f}  p5 {p[1]:.3f}  p50 {p[2]:.3f}  p95 {p[3]:.3f}  "
              f"max {p[4]:.3f}")
    for lang in ("en", "zh"):
        for gate in (0.20, 0.25, 0.30, 0.35):
            kept = {n: float(np.mean(v >= gate)) for n, v in rows.items() if n.startswith(lang)}
            print(lang, gate, "  ".join(f"{n.split('(')[0].strip()}: {k:.0%}" for n, k in kept.items()))


if __name__ == "__main__":
    main()
