"""Measure a Scrubber on labelled data (span-overlap matching): per type and overall precision,
recall, F2 and support. Formats: presidio-research JSON (`generated_*.json`) and CLUENER JSON lines."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.errors import KbError
from ingest.pii.cn_ner import is_postal
from ingest.types import PiiEntity, Scrubber

# Dataset labels -> our types. Unmapped labels keep their name and are reported, never claimed.
GOLD_MAP = {
    "PERSON": "PERSON", "PER": "PERSON", "name": "PERSON",
    "ADDRESS": "ADDRESS", "STREET_ADDRESS": "ADDRESS", "address": "ADDRESS",
    "LOCATION": "LOCATION", "GPE": "LOCATION",
    "PHONE_NUMBER": "PHONE", "EMAIL_ADDRESS": "EMAIL", "CREDIT_CARD": "BANK_CARD", "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS", "DOMAIN_NAME": "URL", "URL": "URL",
}
# A predicted type that overlaps a gold span of a compatible type is not a false positive: a street
# address block contains its city and country, which presidio-research labels LOCATION.
COMPATIBLE = {("ADDRESS", "LOCATION"), ("LOCATION", "ADDRESS")}
STRUCTURED = ("EMAIL", "PHONE", "BANK_CARD", "IBAN", "US_SSN", "IP_ADDRESS")


@dataclass
class Sample:
    text: str
    spans: list[tuple[str, int, int]]  # our type, start, end (exclusive)


def load_presidio(path: Path) -> list[Sample]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        Sample(
            row["full_text"],
            [(GOLD_MAP.get(s["entity_type"], s["entity_type"]), s["start_position"], s["end_position"])
             for s in row["spans"]],
        )
        for row in data
    ]


def held_aside(text: str) -> bool:
    """The tenth of CLUENER train kept out of training the Chinese CRF (ingest/pii/data/train_cn_ner.py)."""
    return int(hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest(), 16) % 10 == 0


def load_cluener(path: Path, labels: Sequence[str] = ("name", "address"), split: str = "all") -> list[Sample]:
    """CLUENER JSON lines; ``split`` "held-aside" keeps only the lines the Chinese CRF never saw."""
    if split not in ("all", "held-aside"):
        raise KbError(f"Unknown CLUENER split {split!r}: use 'all' or 'held-aside'.")
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if split == "held-aside" and not held_aside(row["text"]):
                continue
            spans = []
            for label, values in row.get("label", {}).items():
                if label not in labels:
                    continue
                for value, positions in values.items():
                    kind = GOLD_MAP[label]
                    if kind == "ADDRESS" and not is_postal(value):  # a bare place: "香港", "上海市"
                        kind = "LOCATION"
                    spans += [(kind, start, end + 1) for start, end in positions]  # CLUENER ends are inclusive
            out.append(Sample(row["text"], spans))
    return out


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _match(pred: str, gold: str) -> bool:
    return pred == gold or (pred, gold) in COMPATIBLE


def score_samples(samples: Sequence[Sample], predictions: Iterable[list[PiiEntity]],
                  claimed: Sequence[str]) -> dict:
    tp_gold, support, tp_pred, n_pred = Counter(), Counter(), Counter(), Counter()
    for sample, preds in zip(samples, predictions, strict=True):
        for g_type, gs, ge in sample.spans:
            support[g_type] += 1
            if any(_match(p.type, g_type) and _overlaps((p.start, p.end), (gs, ge)) for p in preds):
                tp_gold[g_type] += 1
        for p in preds:
            n_pred[p.type] += 1
            if any(_match(p.type, g) and _overlaps((p.start, p.end), (gs, ge)) for g, gs, ge in sample.spans):
                tp_pred[p.type] += 1
    types = sorted(set(support) | set(n_pred))
    per_type = {t: _prf(tp_gold[t], support[t], tp_pred[t], n_pred[t]) | {"claimed": t in claimed}
                for t in types}

    def group(names: Iterable[str]) -> dict:
        names = [n for n in names if n in per_type]
        return _prf(sum(tp_gold[n] for n in names), sum(support[n] for n in names),
                    sum(tp_pred[n] for n in names), sum(n_pred[n] for n in names))

    return {
        "samples": len(samples),
        "claimed": list(claimed),
        "per_type": per_type,
        "overall": group(claimed),
        "structured": group(t for t in STRUCTURED if t in claimed),
    }


def _prf(tp_gold: int, support: int, tp_pred: int, n_pred: int) -> dict:
    recall = tp_gold / support if support else None
    precision = tp_pred / n_pred if n_pred else None
    if recall is None or precision is None or precision + recall == 0:
        f2 = None if recall is None or precision is None else 0.0
    else:
        f2 = 5 * precision * recall / (4 * precision + recall)
    return {"precision": precision, "recall": recall, "f2": f2, "support": support, "predicted": n_pred}


def evaluate(scrubber: Scrubber, path: str | Path, fmt: Literal["presidio", "cluener"], split: str = "all") -> dict:
    """Score ``scrubber`` on a labelled file. Claimed types: those the scrubber is set to find."""
    path = Path(path)
    if not path.is_file():
        raise KbError(f"No labelled data at {path}: pass a presidio-research JSON or CLUENER JSONL file.")
    if fmt == "presidio":
        samples = load_presidio(path)
    elif fmt == "cluener":
        samples = load_cluener(path, split=split)
    else:
        raise KbError(f"Unknown evaluation format {fmt!r}: use 'presidio' or 'cluener'.")
    texts = [s.text for s in samples]
    preds = scrubber.analyze_many(texts)
    claimed = list(scrubber.entities)
    if fmt == "cluener":
        claimed = [t for t in claimed if t in ("PERSON", "ADDRESS", "LOCATION")]
    result = score_samples(samples, preds, claimed)
    result |= {"path": str(path), "format": fmt, "split": split}
    return result


def format_report(result: dict) -> str:
    def f(x: float | None) -> str:
        return "   -  " if x is None else f"{x:6.3f}"

    lines = [f"{'type':<12} {'prec':>6} {'recall':>6} {'F2':>6} {'support':>8} {'pred':>6}  claimed"]
    for t, r in result["per_type"].items():
        lines.append(f"{t:<12} {f(r['precision'])} {f(r['recall'])} {f(r['f2'])} {r['support']:>8} "
                     f"{r['predicted']:>6}  {'yes' if r['claimed'] else 'no'}")
    for label in ("structured", "overall"):
        r = result[label]
        lines.append(f"{label.upper():<12} {f(r['precision'])} {f(r['recall'])} {f(r['f2'])} {r['support']:>8} "
                     f"{r['predicted']:>6}")
    return "\n".join(lines)
