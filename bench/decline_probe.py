"""Does the model know when its sources do not answer? The probability it gives kb's decline sentence
("The documents do not contain the answer." / "文档中没有找到答案。") as the start of its answer, measured for
answerable and unanswerable questions with the prompt kb really sends (same retrieval, gate, focus, template).

Prints the ROC AUC of that probability (answerable vs unanswerable, and "gold in the prompt" vs not) and, per
threshold, the share of answerable questions it would decline (false refusals) and of unanswerable ones it
would decline: what a calibrated decline rule could reach, before building one. One prompt evaluation per
question plus a token per decline token; no answer is generated.

    .venv/bin/python bench/decline_probe.py --set ../shared/data/squad_v2_dev_subset/dev-subset.json --n 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["KB_CACHE__ANSWERS"] = "false"

import numpy as np  # noqa: E402

from app.services import evaluation as ev  # noqa: E402
from app.services import qa  # noqa: E402
from app.settings import Settings  # noqa: E402
from llm.prompt import detect_language  # noqa: E402


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float64)
    m = row.max()
    return row - m - math.log(np.exp(row - m).sum())


def decline_logprobs(llama, prompt: str, decline: str) -> list[float]:
    """log P of each token of ``decline`` written as the answer's start, after ``prompt`` (KV-cached prefix)."""
    tokens = llama.tokenize(prompt.encode("utf-8"), special=True)
    target = llama.tokenize(decline.encode("utf-8"), add_bos=False, special=False)
    same = 0
    for a, b in zip(llama._input_ids[: llama.n_tokens], tokens[:-1], strict=False):
        if a != b:
            break
        same += 1
    llama.n_tokens = same
    llama.eval(tokens[same:])
    out = []
    for t in target:  # without logits_all llama.cpp keeps the last position's logits only
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
        out.append(float(_log_softmax(logits)[t]))
        llama.eval([t])
    return out


def auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a random positive scores above a random negative); ties count half."""
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return round(wins / (len(pos) * len(neg)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--paragraphs", type=int, default=None, help="ingest at most this many paragraphs")
    ap.add_argument("--prefix", type=int, default=3, help="decline tokens scored for the rule (the rest varies)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    settings = Settings()
    settings = settings.model_copy(update={"llm": ev.resolve_models(settings, [])[0].llm})
    qa_set = ev.load_squad(args.set)
    chosen = ev.sample_questions(qa_set.items, args.n, args.seed)
    corpus = ev.paragraphs_for(qa_set, chosen, args.paragraphs)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kb-probe-") as tmp:
        c, _chunks, _worker, ingest_s = ev._ingest(settings, corpus, Path(tmp), None)
        print(f"ingested {len(corpus)} paragraphs in {ingest_s:.0f} s", file=sys.stderr)
        gen = c.generator
        for i, q in enumerate(chosen):
            lang = detect_language(q.question)
            res = qa.AskResult(question=q.question)
            _ranked, res.passages = ev.gated_passages(c, q.question)
            if not res.passages:
                rows.append({"answerable": q.answerable, "gated": True})
                continue
            messages = qa.prompt_for(c, res)
            prompt = gen.render_prompt(messages)
            lps = decline_logprobs(gen.llama, prompt, qa.NOT_IN_SOURCES[lang])
            gold = q.answerable and any(ev.contains_answer(p.text, q.answers, lang) for p in res.passages)
            rows.append({"answerable": q.answerable, "gold_in_prompt": gold, "gated": False,
                         "logprobs": [round(x, 3) for x in lps]})
            print(f"{i + 1}/{len(chosen)} {'A' if q.answerable else 'U'} p={math.exp(sum(lps[:args.prefix])):.3f}",
                  file=sys.stderr)
        c.engine.dispose()
    scored = [r for r in rows if not r["gated"]]
    p = [math.exp(sum(r["logprobs"][: args.prefix])) for r in scored]
    ans = [x for x, r in zip(p, scored, strict=True) if r["answerable"]]
    una = [x for x, r in zip(p, scored, strict=True) if not r["answerable"]]
    gold = [x for x, r in zip(p, scored, strict=True) if r.get("gold_in_prompt")]
    nogold = [x for x, r in zip(p, scored, strict=True) if not r.get("gold_in_prompt")]
    table = []
    for t in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        table.append({"threshold": t, "false_refusals": round(sum(x >= t for x in ans) / max(1, len(ans)), 3),
                      "unanswerable_declined": round(sum(x >= t for x in una) / max(1, len(una)), 3)})
    report = {"set": qa_set.name, "questions": len(rows), "gated": len(rows) - len(scored),
              "prefix_tokens": args.prefix,
              "auc_unanswerable_vs_answerable": auc(una, ans), "auc_no_gold_vs_gold": auc(nogold, gold),
              "thresholds": table, "rows": rows}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['set']}: {len(scored)} questions scored ({report['gated']} stopped by the gate), "
          f"P(decline) from its first {args.prefix} tokens")
    print(f"AUC unanswerable vs answerable {report['auc_unanswerable_vs_answerable']}, "
          f"no gold in prompt vs gold {report['auc_no_gold_vs_gold']}")
    print("decline when P >=  false refusals  unanswerable declined")
    for r in table:
        print(f"{r['threshold']:>17}  {r['false_refusals']:>14}  {r['unanswerable_declined']:>21}")


if __name__ == "__main__":
    main()
