"""Chinese BM25 options on CMRC2018 dev: jieba vs character bigrams, and what helps jieba.

    nice -n 10 .venv/bin/python bench/chinese_bm25.py [--data ../shared/data] [--json]

Every question retrieves its own paragraph among all 848 (R@1, R@5, nDCG@10). Variants: jieba (today),
character bigrams, full-width folding, bigram back-off for words outside jieba's dictionary, a user
dictionary, and all together. The user dictionary stands in for an admin's list of domain terms: the
article titles of the set (names of people, places, works: what an organisation's own term list holds);
it uses no question and no answer. A second pass asks every question in full-width form (ASCII letters
and digits written as their full-width variants, as some input methods type them) to show what folding
buys.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval.evaluate import doc_hits, load_cmrc  # noqa: E402
from retrieval.lexical import BM25Index  # noqa: E402
from retrieval.metrics import evaluate  # noqa: E402

METRICS = ("recall@1", "recall@5", "ndcg@10")


def to_fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    path = args.data / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json"
    paragraphs, c2d, queries, qrels = load_cmrc(path)
    titles = sorted({a["title"].strip() for a in json.loads(path.read_text(encoding="utf-8"))["data"]
                     if a.get("title", "").strip() and " " not in a["title"].strip()})
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write("".join(f"{unicodedata.normalize('NFC', t)} 50 nz\n" for t in titles))
        user_dict = fh.name
    variants = {
        "bigram": {"tokenizer": "bigram"},
        "jieba (today)": {},
        "jieba + fold_width": {"fold_width": True},
        "jieba + oov_bigrams": {"oov_bigrams": True},
        "jieba + user_dict": {"user_dict": user_dict},
        "jieba + all three": {"fold_width": True, "oov_bigrams": True, "user_dict": user_dict},
    }
    full = {q: to_fullwidth(t) for q, t in queries.items()}
    report = {}
    for name, opts in variants.items():
        t0 = time.perf_counter()
        bm = BM25Index(k1=0.9, b=0.4, **opts)
        bm.add(list(range(len(paragraphs))), paragraphs)
        res = {}
        for label, qs in (("questions", queries), ("full-width questions", full)):
            run = {q: doc_hits(bm.search(t, 100), c2d) for q, t in qs.items()}
            res[label] = evaluate(run, qrels, METRICS)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        report[name] = res
        print(name, json.dumps(res), file=sys.stderr)
    out = {"queries": len(queries), "paragraphs": len(paragraphs), "user_dict_terms": len(titles), "results": report}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"CMRC2018 dev: {len(queries)} questions, {len(paragraphs)} paragraphs; user dictionary {len(titles)} terms")
    for name, res in report.items():
        cells = "  ".join(f"{lab}: " + " ".join(f"{m}={res[lab][m]:.3f}" for m in METRICS)
                          for lab in ("questions", "full-width questions"))
        print(f"  {name:<22} {cells}  ({res['seconds']} s)")


if __name__ == "__main__":
    main()
