"""Sampling settings side by side on grounded prompts: loops cut, citation markers, speed.

A fixed set of grounded prompts is built with llm.prompt.build_messages: English questions from SQuAD
2.0 dev (the question's paragraph among four others of the same article) and Chinese ones from
CMRC2018 dev (a window of the question's paragraph around its answer among windows of other
paragraphs), the gold passage at a rotating position 1..5. Every setting answers every prompt through
LlamaCppGenerator (so with the loop guard of llm.repetition) and the table shows per setting:

* loops: answers the guard cut (finish_reason "repetition")
* cited: answers with at least one valid [n] marker; gold: answers citing the gold passage
* answer: answers containing the reference answer text (a rough correctness check)
* tokens: median tokens generated (cut loops included up to the cut), tok/s: median decode speed
* TTFT: median time to the first emitted delta with only the system prompt in the KV cache (as after a
  different question). Sampling does not change it, so by default only the first setting run on each
  prompt evaluates the prompt (the order rotates, so each setting gets its share) and the others reuse
  it; ``--fresh-ttft`` evaluates the prompt for every run.

``--kv`` measures instead how much the KV cache prefix reuse saves: TTFT with an empty cache, with
only the system prompt cached (a new question), and with the whole prompt cached.

    .venv/bin/python bench/answer_sampling.py --model data/models/X.gguf [--questions 8] [--settings a,b]
        [--data ../shared/data] [--threads N] [--show] [--json] [--kv]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm.citations import check_citations  # noqa: E402
from llm.llamacpp import LlamaCppGenerator  # noqa: E402
from llm.prompt import build_messages  # noqa: E402
from llm.repetition import AnswerStream  # noqa: E402
from llm.sampling import Sampling  # noqa: E402
from llm.types import ChatMessage, SourcePassage  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# name -> (temperature, sampling overrides). "t0.2 rp1.0" is kb before this benchmark.
SETTINGS: dict[str, tuple[float, dict[str, Any]]] = {
    "t0 rp1.0": (0.0, {"repeat_penalty": 1.0}),
    "t0.2 rp1.0": (0.2, {"repeat_penalty": 1.0}),
    "t0.2 rp1.1": (0.2, {"repeat_penalty": 1.1}),
    "t0.2 rp1.2": (0.2, {"repeat_penalty": 1.2}),
    "t0.2 pp0.5": (0.2, {"repeat_penalty": 1.0, "presence_penalty": 0.5}),
    "t0.2 fp0.5": (0.2, {"repeat_penalty": 1.0, "frequency_penalty": 0.5}),
}


@dataclass
class Prompt:
    lang: str
    question: str
    passages: list[SourcePassage]
    gold_n: int
    answer: str


def _window(text: str, start: int, size: int) -> str:
    """About ``size`` characters of ``text`` containing position ``start``."""
    if len(text) <= size:
        return text
    lo = max(0, min(start - size // 3, len(text) - size))
    return text[lo : lo + size]


def squad_prompts(path: Path, n: int) -> list[Prompt]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out: list[Prompt] = []
    i = 0
    while len(out) < n:
        article = data[i % len(data)]
        paras = article["paragraphs"]
        k = (i // len(data)) * 5 % len(paras)
        qa = next((q for q in paras[k]["qas"] if not q.get("is_impossible") and q["answers"]), None)
        i += 1
        if qa is None:
            continue
        gold_n = len(out) % 5 + 1
        others = [paras[(k + j) % len(paras)]["context"] for j in range(1, 5)]
        texts = others[: gold_n - 1] + [paras[k]["context"]] + others[gold_n - 1 :]
        passages = [SourcePassage(n=j, text=_window(t, 0, 900), title=article["title"].replace("_", " "))
                    for j, t in enumerate(texts, start=1)]
        passages[gold_n - 1] = replace(
            passages[gold_n - 1], text=_window(paras[k]["context"], qa["answers"][0]["answer_start"], 900))
        out.append(Prompt("en", qa["question"], passages, gold_n, qa["answers"][0]["text"]))
    return out


def cmrc_prompts(path: Path, n: int) -> list[Prompt]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out: list[Prompt] = []
    for i in range(n):
        doc = data[i * 7 % len(data)]
        para = doc["paragraphs"][0]
        qa = para["qas"][0]
        gold_n = i % 5 + 1
        others = [data[(i * 7 + 3 * j) % len(data)] for j in range(1, 5)]
        texts = [_window(o["paragraphs"][0]["context"], 0, 300) for o in others]
        gold = _window(para["context"], qa["answers"][0]["answer_start"], 300)
        texts = texts[: gold_n - 1] + [gold] + texts[gold_n - 1 :]
        titles = [o["title"] for o in others]
        titles = titles[: gold_n - 1] + [doc["title"]] + titles[gold_n - 1 :]
        passages = [SourcePassage(n=j, text=t, title=title)
                    for j, (t, title) in enumerate(zip(texts, titles, strict=True), 1)]
        out.append(Prompt("zh", qa["question"], passages, gold_n, qa["answers"][0]["text"]))
    return out


def system_prefix_tokens(gen: LlamaCppGenerator, messages: list[ChatMessage]) -> int:
    """Tokens the prompt shares with any other question's prompt (the system message and the template)."""
    other = [messages[0], ChatMessage("user", "\u2063")]
    a = gen.llama.tokenize(gen.render_prompt(messages).encode(), add_bos=False, special=True)
    b = gen.llama.tokenize(gen.render_prompt(other).encode(), add_bos=False, special=True)
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def run_one(gen: LlamaCppGenerator, messages: list[ChatMessage], max_tokens: int, temperature: float) -> dict:
    t0 = time.perf_counter()
    first = None
    stream = gen.stream(messages, max_tokens, temperature)
    assert isinstance(stream, AnswerStream)
    for _ in stream:
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    generated = stream.generated
    tokens = gen.count_tokens(generated) if generated else 0
    decode = (tokens - 1) / (end - first) if first is not None and tokens > 1 and end > first else float("nan")
    return {"ttft_s": (first or end) - t0, "tokens": tokens, "tok_per_s": decode, "text": stream.text,
            "finish": stream.finish_reason,
            "repeated": stream.repetition.unit if stream.repetition else None}


def score(p: Prompt, text: str) -> dict:
    _, cited, invalid = check_citations(text, len(p.passages))
    return {"cited": bool(cited), "gold": p.gold_n in cited, "answer": p.answer.lower() in text.lower(),
            "invalid": bool(invalid)}


def bench_settings(gen: LlamaCppGenerator, prompts: list[Prompt], names: list[str], max_tokens: int,
                   seed: int, show: bool, fresh_ttft: bool = False) -> dict[str, Any]:
    rows: dict[str, list[dict]] = {name: [] for name in names}
    for i, p in enumerate(prompts):
        messages, _ = build_messages(p.question, p.passages, gen.count_tokens, gen.context_window, max_tokens)
        keep = system_prefix_tokens(gen, messages)
        order = names[i % len(names):] + names[: i % len(names)]
        for k, name in enumerate(order):
            temperature, overrides = SETTINGS[name]
            gen.sampling = Sampling(**{**Sampling().__dict__, **overrides, "seed": seed + i})
            if k == 0 or fresh_ttft:
                gen.llama.n_tokens = min(gen.llama.n_tokens, keep)  # as after a different question
            r = run_one(gen, messages, max_tokens, temperature)
            r.update(score(p, r["text"]), lang=p.lang, prompt=i, ttft_measured=k == 0 or fresh_ttft)
            rows[name].append(r)
            if show:
                print(f"--- [{name}] {p.lang} #{i} gold [{p.gold_n}] {p.answer!r} finish={r['finish']}\n"
                      f"Q: {p.question}\nA: {r['text']}\n", flush=True)
    summary = {}
    for name, rs in rows.items():
        n = len(rs)
        summary[name] = {
            "n": n,
            "loops_cut": sum(r["finish"] == "repetition" for r in rs),
            "hit_max_tokens": sum(r["finish"] == "length" for r in rs),
            "cited": sum(r["cited"] for r in rs),
            "gold_cited": sum(r["gold"] for r in rs),
            "answer_found": sum(r["answer"] for r in rs),
            "tokens_median": statistics.median(r["tokens"] for r in rs),
            "tok_per_s": statistics.median(r["tok_per_s"] for r in rs if r["tok_per_s"] == r["tok_per_s"]),
            "ttft_s": statistics.median([r["ttft_s"] for r in rs if r["ttft_measured"]] or [float("nan")]),
            "by_lang": {
                lang: {"n": sum(r["lang"] == lang for r in rs),
                       "loops_cut": sum(r["finish"] == "repetition" for r in rs if r["lang"] == lang),
                       "cited": sum(r["cited"] for r in rs if r["lang"] == lang)}
                for lang in ("en", "zh")
            },
        }
    return {"summary": summary, "rows": rows}


def bench_kv(gen: LlamaCppGenerator, prompts: list[Prompt], max_tokens: int) -> dict[str, Any]:
    """TTFT for one question: empty cache, system prompt cached, whole prompt cached."""
    out: dict[str, list[float]] = {"cold": [], "system_cached": [], "prompt_cached": []}
    prompt_tokens = []
    prefix = []
    for p in prompts:
        messages, _ = build_messages(p.question, p.passages, gen.count_tokens, gen.context_window, max_tokens)
        keep = system_prefix_tokens(gen, messages)
        prefix.append(keep)
        prompt_tokens.append(len(gen.llama.tokenize(gen.render_prompt(messages).encode(), add_bos=False,
                                                    special=True)))
        gen.sampling = Sampling(seed=0)
        gen.llama.n_tokens = 0
        out["cold"].append(run_one(gen, messages, 1, 0.0)["ttft_s"])
        gen.llama.n_tokens = keep
        out["system_cached"].append(run_one(gen, messages, 1, 0.0)["ttft_s"])
        out["prompt_cached"].append(run_one(gen, messages, 1, 0.0)["ttft_s"])
    return {"prompt_tokens_median": statistics.median(prompt_tokens),
            "system_prefix_tokens_median": statistics.median(prefix),
            **{k: statistics.median(v) for k, v in out.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="GGUF file")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--questions", type=int, default=8, help="per language")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {list(SETTINGS)}")
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None, help="default: what LlamaCppGenerator picks")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--show", action="store_true", help="print every answer")
    ap.add_argument("--kv", action="store_true", help="measure KV-cache prefix reuse instead")
    ap.add_argument("--fresh-ttft", action="store_true", help="evaluate the prompt for every run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    prompts = (squad_prompts(args.data / "squad_v2_dev_subset" / "dev-subset.json", args.questions)
               + cmrc_prompts(args.data / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json", args.questions))
    gen = LlamaCppGenerator(args.model, n_ctx=args.n_ctx, n_threads=args.threads, allow_unverified=True)  # a bench
    t = time.perf_counter()
    llama = gen.llama
    load_s = time.perf_counter() - t
    head = {"model": args.model.name, "threads": llama.n_threads, "n_ctx": gen.context_window,
            "max_tokens": args.max_tokens, "prompts": len(prompts), "load_s": round(load_s, 2)}
    if args.kv:
        report = {**head, "kv": bench_kv(gen, prompts, args.max_tokens)}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            kv = report["kv"]
            print(f"model {head['model']}  threads {head['threads']}  prompts {len(prompts)}  prompt tokens "
                  f"{kv['prompt_tokens_median']:.0f} (system prefix {kv['system_prefix_tokens_median']:.0f}), "
                  "median TTFT:")
            print(f"  empty cache {kv['cold']:.3f}s  system prompt cached {kv['system_cached']:.3f}s  "
                  f"whole prompt cached {kv['prompt_cached']:.3f}s")
        return
    result = bench_settings(gen, prompts, names, args.max_tokens, args.seed, args.show, args.fresh_ttft)
    measured = [r["ttft_s"] for rs in result["rows"].values() for r in rs if r["ttft_measured"]]
    result["ttft_s_all_settings"] = statistics.median(measured)
    report = {**head, **result}
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    print(f"model {head['model']}  threads {head['threads']}  prompts {len(prompts)} "
          f"({args.questions} en + {args.questions} zh)  max_tokens {args.max_tokens}  load {load_s:.1f}s")
    print(f"{'setting':<12}{'loops':>6}{'len':>5}{'cited':>7}{'gold':>6}{'answer':>8}{'tokens':>8}"
          f"{'tok/s':>8}{'TTFT s':>8}   en loops/cited  zh loops/cited")
    for name, s in result["summary"].items():
        en, zh = s["by_lang"]["en"], s["by_lang"]["zh"]
        print(f"{name:<12}{s['loops_cut']:>6}{s['hit_max_tokens']:>5}{s['cited']:>7}{s['gold_cited']:>6}"
              f"{s['answer_found']:>8}{s['tokens_median']:>8.0f}{s['tok_per_s']:>8.1f}{s['ttft_s']:>8.2f}"
              f"   {en['loops_cut']:>5}/{en['cited']:<8}{zh['loops_cut']:>5}/{zh['cited']}")
    print(f"(out of {len(prompts)} answers each; cited = at least one valid [n]; TTFT over all settings "
          f"{result['ttft_s_all_settings']:.2f}s)")


if __name__ == "__main__":
    main()
