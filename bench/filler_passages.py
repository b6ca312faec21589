"""Which passages the relevance gate keeps from the model (app/services/qa.py `_relevant`), on one collection
holding an English and a Chinese set together, as a bilingual organisation's would.

The paragraphs of a SQuAD-style English set and of CMRC2018 are ingested into one index through the real
pipeline (PII scrubbing on); each answerable question is searched as `kb ask` searches (top_k passages),
and the gate's choice is compared with the full ranking: passages left out (fillers: no word shared with the
question, dense similarity under half the gate), and questions whose gold answer was only in a passage left
out (the cost). Retrieval only: no model runs.

    .venv/bin/python bench/filler_passages.py --squad ../shared/data/squad_v2_dev_subset/dev-subset.json \
        --cmrc ../shared/data/cmrc2018 --n 300 [--en-paragraphs 150 --zh-paragraphs 150] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["KB_CACHE__ANSWERS"] = "false"

from app.services import evaluation as ev  # noqa: E402
from app.settings import Settings  # noqa: E402


def sample(path: Path, n: int, max_paragraphs: int, seed: int, prefix: str):
    """Up to ``n`` answerable questions whose paragraphs number at most ``max_paragraphs``, and those paragraphs
    (ids prefixed, so two sets share one index)."""
    qa_set = ev.load_squad(path)
    items = [q for q in qa_set.items if q.answerable]
    random.Random(seed).shuffle(items)
    keep: set[str] = set()
    chosen = []
    for q in items:
        if q.paragraph in keep or len(keep) < max_paragraphs:
            keep.add(q.paragraph)
            chosen.append(q)
        if len(chosen) >= n:
            break
    return chosen, {f"{prefix}{p}": t for p, t in qa_set.paragraphs.items() if p in keep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--squad", type=Path, required=True)
    ap.add_argument("--cmrc", type=Path, required=True)
    ap.add_argument("--n", type=int, default=300, help="answerable questions per set")
    ap.add_argument("--en-paragraphs", type=int, default=150, help="English paragraphs in the collection")
    ap.add_argument("--zh-paragraphs", type=int, default=150,
                    help="Chinese paragraphs (a few: a collection mostly in the other language, where fillers occur)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    settings = Settings()
    settings = settings.model_copy(update={"llm": ev.resolve_models(settings, [])[0].llm})
    sets = {"en": sample(args.squad, args.n, args.en_paragraphs, args.seed, "en-"),
            "zh": sample(args.cmrc, args.n, args.zh_paragraphs, args.seed, "zh-")}
    corpus = {**sets["en"][1], **sets["zh"][1]}
    k = settings.retrieval.top_k
    report = {}
    with tempfile.TemporaryDirectory(prefix="kb-filler-") as tmp:
        c, _chunks, _worker, ingest_s = ev._ingest(settings, corpus, Path(tmp), None)
        print(f"ingested {len(corpus)} paragraphs in {ingest_s:.0f} s", file=sys.stderr)
        for lang, (questions, _) in sets.items():
            row = {"questions": len(questions), "gated": 0, "ranked": 0, "given": 0, "with_filler": 0,
                   "gold_ranked": 0, "gold_given": 0}
            for q in questions:
                ranked, given = ev.gated_passages(c, q.question)
                if not given:
                    row["gated"] += 1
                    continue
                row["ranked"] += len(ranked)
                row["given"] += len(given)
                row["with_filler"] += len(given) < len(ranked)
                row["gold_ranked"] += any(ev.contains_answer(p.text, q.answers, lang) for p in ranked)
                row["gold_given"] += any(ev.contains_answer(p.text, q.answers, lang) for p in given)
            report[lang] = row
        c.engine.dispose()
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"one collection: {len(sets['en'][1])} English + {len(sets['zh'][1])} Chinese paragraphs, top_k {k}")
    print("set  questions  refused by gate  passages ranked  given  questions with a filler  gold in ranked  "
          "gold in given")
    for lang, r in report.items():
        print(f"{lang:<4} {r['questions']:>9}  {r['gated']:>15}  {r['ranked']:>15}  {r['given']:>5}  "
              f"{r['with_filler']:>23}  {r['gold_ranked']:>14}  {r['gold_given']:>13}")


if __name__ == "__main__":
    main()
