"""How much of the prompt passage focus (llm/focus.py) saves, and what it costs: for answerable questions,
the gold answer in the top_k passages as retrieved vs in the same passages focused to a token budget, and
the passage tokens the model would read (its own tokenizer). Retrieval only: no model generates.

The set's paragraphs go through the real pipeline (PII scrubbing on) into a throw-away kb; each question is
searched as `kb ask` searches it, the gate applied.

    .venv/bin/python bench/passage_focus.py --set ../shared/data/squad_v2_dev_subset/dev-subset.json \
        --n 300 [--budgets 0,40,60,80,120] [--first 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["KB_CACHE__ANSWERS"] = "false"

from filler_passages import sample  # noqa: E402

from app.services import evaluation as ev  # noqa: E402
from app.services.search import search_terms  # noqa: E402
from app.settings import Settings  # noqa: E402
from llm.focus import focus_passages  # noqa: E402
from llm.prompt import detect_language  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", type=Path, required=True, help="SQuAD-format file or folder (SQuAD 2.0, CMRC2018)")
    ap.add_argument("--n", type=int, default=300, help="answerable questions")
    ap.add_argument("--paragraphs", type=int, default=150, help="paragraphs in the collection")
    ap.add_argument("--budgets", default="0,40,60,80,120", help="tokens per passage (0: whole passages)")
    ap.add_argument("--first", type=float, default=2.0, help="the first passage's budget, times --budgets")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    settings = Settings()
    settings = settings.model_copy(update={"llm": ev.resolve_models(settings, [])[0].llm})
    questions, corpus = sample(args.set, args.n, args.paragraphs, args.seed, "")
    from llama_cpp import Llama

    vocab = Llama(model_path=str(settings.llm.model_path), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    k = settings.retrieval.top_k
    rows = {b: {"gold": 0, "gold_top": 0, "tokens": []} for b in budgets}
    asked = 0
    with tempfile.TemporaryDirectory(prefix="kb-focus-") as tmp:
        c, _chunks, _worker, ingest_s = ev._ingest(settings, corpus, Path(tmp), None)
        print(f"ingested {len(corpus)} paragraphs in {ingest_s:.0f} s", file=sys.stderr)
        for q in questions:
            lang = detect_language(q.question)
            _ranked, given = ev.gated_passages(c, q.question)
            if not given:
                continue
            asked += 1
            for b in budgets:
                texts = focus_passages(q.question, [p.text for p in given], search_terms, count, b, int(b * args.first))
                r = rows[b]
                r["gold"] += any(ev.contains_answer(t, q.answers, lang) for t in texts)
                r["gold_top"] += ev.contains_answer(texts[0], q.answers, lang)
                r["tokens"].append(sum(count(t) for t in texts))
        c.engine.dispose()
    report = {"set": args.set.name, "questions": asked, "top_k": k, "first_budget_factor": args.first,
              "budgets": {b: {"gold_in_prompt": round(r["gold"] / asked, 3),
                              "gold_in_first": round(r["gold_top"] / asked, 3),
                              "passage_tokens_p50": statistics.median(r["tokens"]),
                              "passage_tokens_mean": round(statistics.fmean(r["tokens"]), 1)}
                          for b, r in rows.items()}}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['set']}: {asked} answerable questions past the gate, top_k {k}, first passage x{args.first}")
    print("budget/passage  gold in prompt  gold in first  passage tokens p50  mean")
    for b, r in report["budgets"].items():
        print(f"{b or 'whole':>14}  {r['gold_in_prompt']:>14.3f}  {r['gold_in_first']:>13.3f}  "
              f"{r['passage_tokens_p50']:>18}  {r['passage_tokens_mean']:>5}")


if __name__ == "__main__":
    main()
