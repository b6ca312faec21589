"""Train cn_ner.crfsuite, the Chinese name/address CRF read by ``ingest/pii/cn_ner.py`` (run by hand,
never at run time; the result is committed with its sha256).

    .venv/bin/python ingest/pii/data/train_cn_ner.py --train ../shared/data/cluener2020/train.jsonl

Data: CLUENER2020 ``train.jsonl``, labels ``name`` (-> PER) and ``address`` (-> ADDR); every other label
is O. One line in ten (``held_aside``: the sha1 of the text, mod 10 == 0) is kept out of training and
is where the figures and the score threshold were chosen; CLUENER's dev set is not used here.
Training is deterministic (L-BFGS, fixed order), so the same data and parameters give the same file.
Prints span-overlap precision/recall on the held-aside lines and the sha256 to put into
``cn_ner.MODEL_SHA256``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(_ROOT))

from ingest.pii import cn_ner  # noqa: E402
from ingest.pii.evaluate import held_aside  # noqa: E402

LABEL_MAP = {"name": "PER", "address": "ADDR"}
# The other CLUENER labels are learned too, in three groups, so the model is told that a scenic spot, a
# club or a game character's game is not a person (the scrubber reads only PER and ADDR).
OTHER_MAP = {"scene": "LOC", "company": "ORG", "organization": "ORG", "government": "ORG",
             "game": "MISC", "book": "MISC", "movie": "MISC", "position": "MISC"}
PARAMS = {"c1": 0.05, "c2": 0.01, "max_iterations": 150, "feature.possible_transitions": True}


def bio(row: dict) -> list[str]:
    tags = ["O"] * len(row["text"])
    for label, values in row.get("label", {}).items():
        kind = LABEL_MAP.get(label) or OTHER_MAP.get(label)
        if kind is None:
            continue
        for positions in values.values():
            for start, end in positions:  # CLUENER ends are inclusive
                tags[start] = f"B-{kind}"
                for i in range(start + 1, end + 1):
                    tags[i] = f"I-{kind}"
    return tags


def load(path: Path) -> tuple[list[dict], list[dict]]:
    train, dev = [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                (dev if held_aside(row["text"]) else train).append(row)
    return train, dev


def train(rows: list[dict], out: Path, params: dict) -> None:
    import pycrfsuite

    trainer = pycrfsuite.Trainer(verbose=False)
    for row in rows:
        trainer.append(cn_ner.features(row["text"]), bio(row))
    trainer.set_params(params)
    trainer.train(str(out))


def gold_spans(row: dict) -> list[tuple[str, int, int]]:
    return [
        (LABEL_MAP[label], s, e + 1)
        for label, values in row.get("label", {}).items() if label in LABEL_MAP
        for positions in values.values() for s, e in positions
    ]


def score(model: Path, rows: list[dict], char_mins: list[float], span_mins: list[float]) -> dict:
    """Span-overlap precision/recall per label for each (character, span) threshold pair, through
    ``cn_ner.find`` exactly as the scrubber calls it."""
    import pycrfsuite

    tagger = pycrfsuite.Tagger()
    tagger.open(str(model))
    result = {}
    for char_min in char_mins:
        for span_min in span_mins:
            preds = [cn_ner.find(r["text"], char_min, span_min, tagger=tagger) for r in rows]
            for kind, etype in cn_ner.LABELS.items():
                support = hit_gold = n_pred = hit_pred = 0
                for row, pred in zip(rows, preds, strict=True):
                    gold = [(s, e) for k, s, e in gold_spans(row) if k == kind]
                    mine = [(p.start, p.end) for p in pred if p.type == etype]
                    support += len(gold)
                    n_pred += len(mine)
                    hit_gold += sum(any(a < pe and pa < b for pa, pe in mine) for a, b in gold)
                    hit_pred += sum(any(a < ge and ga < b for ga, ge in gold) for a, b in mine)
                result[f"{kind} char>={char_min} span>={span_min}"] = {
                    "precision": round(hit_pred / max(n_pred, 1), 4), "recall": round(hit_gold / max(support, 1), 4),
                    "support": support, "predicted": n_pred}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True, help="CLUENER2020 train.jsonl")
    ap.add_argument("--out", type=Path, default=cn_ner.MODEL_PATH)
    ap.add_argument("--c1", type=float, default=PARAMS["c1"])
    ap.add_argument("--c2", type=float, default=PARAMS["c2"])
    ap.add_argument("--iterations", type=int, default=PARAMS["max_iterations"])
    ap.add_argument("--all", action="store_true", help="Train on every line (no held-aside figures).")
    args = ap.parse_args()
    train_rows, dev_rows = load(args.train)
    if args.all:
        train_rows, dev_rows = train_rows + dev_rows, []
    params = PARAMS | {"c1": args.c1, "c2": args.c2, "max_iterations": args.iterations}
    t0 = time.perf_counter()
    train(train_rows, args.out, params)
    report = {"train_lines": len(train_rows), "held_aside_lines": len(dev_rows), "params": params,
              "train_s": round(time.perf_counter() - t0, 1), "bytes": args.out.stat().st_size,
              "sha256": hashlib.sha256(args.out.read_bytes()).hexdigest()}
    if dev_rows:
        report["held_aside"] = score(args.out, dev_rows, [0.1, 0.15, 0.2], [0.0, 0.2, 0.3])
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
