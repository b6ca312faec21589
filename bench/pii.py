"""Scrubbing speed (texts/s, ms per 1,000 characters, PERSON detections) for names on with each NER mode
and names off, and, when given, accuracy of the default settings on labelled data.

    .venv/bin/python bench/pii.py --corpus ../shared/data/beir_scifact/corpus.jsonl \
        --presidio ../shared/data/presidio_research/tests_data/generated_large.json \
        --cluener ../shared/data/cluener2020/train.jsonl \
        --zh-corpus ../shared/data/cmrc2018/squad-style-data/cmrc2018_dev.json

--zh-corpus (SQuAD-style JSON, its distinct contexts) times Chinese text with the Chinese CRF on and off;
--cluener also scores the held-aside tenth the CRF was not trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/ingest.py would shadow the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from app.settings import PiiSettings  # noqa: E402
from ingest.pii import build_scrubber  # noqa: E402
from ingest.pii.evaluate import evaluate, format_report  # noqa: E402


def speed(texts: list[str], scrub_names: bool, name_ner: str = "cued", chinese_ner: bool = True) -> dict:
    scrubber = build_scrubber(PiiSettings(scrub_names=scrub_names, name_ner=name_ner, chinese_ner=chinese_ner))
    t0 = time.perf_counter()
    scrubber.analyze("warm up: load models")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = scrubber.analyze_many(texts)
    dt = time.perf_counter() - t0
    chars = sum(map(len, texts))
    return {
        "scrub_names": scrub_names, "name_ner": name_ner if scrub_names else "-", "chinese_ner": chinese_ner,
        "texts": len(texts), "chars": chars, "load_s": round(load_s, 2),
        "seconds": round(dt, 2), "texts_per_s": round(len(texts) / dt, 1),
        "ms_per_1k_chars": round(dt * 1000 / (chars / 1000), 3), "entities": sum(map(len, found)),
        "person": sum(e.type == "PERSON" for f in found for e in f),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="JSON lines with title/text (e.g. SciFact corpus.jsonl)")
    ap.add_argument("--limit", type=int, default=0, help="Use only the first N texts of the corpus.")
    ap.add_argument("--presidio", type=Path, help="presidio-research generated_*.json")
    ap.add_argument("--cluener", type=Path, help="CLUENER train.jsonl")
    ap.add_argument("--zh-corpus", type=Path, help="SQuAD-style JSON with Chinese contexts (CMRC2018 dev)")
    args = ap.parse_args()
    if args.zh_corpus:
        data = json.loads(args.zh_corpus.read_text(encoding="utf-8"))
        contexts = list(dict.fromkeys(p["context"] for a in data["data"] for p in a["paragraphs"]))
        if args.limit:
            contexts = contexts[: args.limit]
        for chinese in (True, False):
            print(json.dumps({"corpus": "zh"} | speed(contexts, True, "cued", chinese)))
    if args.corpus:
        texts = []
        with args.corpus.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                texts.append(f"{row.get('title', '')}\n{row['text']}".strip())
                if args.limit and len(texts) >= args.limit:
                    break
        for names, mode in ((True, "cued"), (True, "capitalized"), (True, "off"), (False, "cued")):
            print(json.dumps(speed(texts, names, mode)))
    scrubber = build_scrubber(PiiSettings())
    if args.presidio:
        print(f"\n== {args.presidio}\n" + format_report(evaluate(scrubber, args.presidio, "presidio")))
    if args.cluener:
        for split in ("all", "held-aside"):
            report = format_report(evaluate(scrubber, args.cluener, "cluener", split))
            print(f"\n== {args.cluener} split {split} (labels name, address)\n{report}")


if __name__ == "__main__":
    main()
