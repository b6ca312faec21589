"""Time to first token and decode speed: LlamaCppGenerator versus llama_cpp.Llama called directly.

A grounded prompt of about --prompt-tokens tokens is built with llm.prompt.build_messages from real
abstracts (BEIR SciFact, the claim as the question) when --corpus is given or found, else from
generated text. Both paths get identical messages, settings and threads; runs alternate which path
goes first, and each run's system message starts with a fresh run number so llama.cpp cannot reuse
the previous run's KV cache. Prints a table, or JSON with --json.

    .venv/bin/python bench/answer_direct.py --runs 7 [--corpus ../shared/data/beir_scifact] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm.amx import amx_traps, without_extra_buffers  # noqa: E402
from llm.llamacpp import LlamaCppGenerator  # noqa: E402
from llm.models import default_model_path, pull_default  # noqa: E402
from llm.prompt import build_messages  # noqa: E402
from llm.types import ChatMessage, SourcePassage  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir_scifact"


def scifact_passages(folder: Path, limit: int = 40) -> tuple[str, list[SourcePassage]]:
    """A claim and abstracts: the claim's relevant ones first (from qrels), then others."""
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    with open(folder / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        qid, doc_id, _ = next(f).rstrip("\n").split("\t")
    docs = []
    with open(folder / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["_id"] == doc_id:
                docs.insert(0, d)
            elif len(docs) < limit:
                docs.append(d)
    passages = [
        SourcePassage(n=i, text=d["text"], title=d["title"], source=f"scifact/{d['_id']}")
        for i, d in enumerate(docs, start=1)
    ]
    return queries[qid], passages


def synthetic_passages() -> tuple[str, list[SourcePassage]]:
    text = ("Staff receive twenty-five days of paid annual leave; unused days expire at the end of March. "
            "Requests go to the line manager at least two weeks ahead. ") * 3
    return "How many days of leave do staff get?", [
        SourcePassage(n=i, text=text, title=f"Handbook section {i}", page=i) for i in range(1, 20)
    ]


def timed(deltas: Iterator[str]) -> dict[str, float | int | str]:
    t0 = time.perf_counter()
    first = last = None
    n = 0
    parts = []
    for d in deltas:
        if not d:
            continue
        last = time.perf_counter()
        if first is None:
            first = last
        n += 1
        parts.append(d)
    end = time.perf_counter()
    if first is None or last is None:
        raise RuntimeError("the model produced no tokens")
    decode = (n - 1) / (last - first) if n > 1 and last > first else float("nan")
    return {"ttft_s": first - t0, "tokens": n, "tok_per_s": decode, "total_s": end - t0,
            "text": "".join(parts)}


def direct_stream(llama: Any, messages: list[ChatMessage], max_tokens: int, sampling: dict) -> Iterator[str]:
    payload = [{"role": m.role, "content": m.content} for m in messages]
    for chunk in llama.create_chat_completion(messages=payload, max_tokens=max_tokens, temperature=0.0,
                                              stream=True, **sampling):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            yield text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="GGUF file (default: the pulled default model)")
    ap.add_argument("--models-dir", type=Path, default=Path("data/models"))
    ap.add_argument("--corpus", type=Path, help="BEIR SciFact folder (corpus.jsonl, queries.jsonl, qrels/)")
    ap.add_argument("--prompt-tokens", type=int, default=600)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=None, help="default: what LlamaCppGenerator picks")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    if args.model:
        model = args.model
    else:
        pull_default(args.models_dir)
        model = default_model_path(args.models_dir)
    corpus = args.corpus or (DEFAULT_CORPUS if (DEFAULT_CORPUS / "corpus.jsonl").exists() else None)
    question, passages = scifact_passages(corpus) if corpus else synthetic_passages()

    gen = LlamaCppGenerator(model, n_ctx=args.n_ctx, n_threads=args.threads, allow_unverified=True)  # a bench
    t = time.perf_counter()
    wrapper_llama = gen.llama  # loads (sha256 check included)
    load_s = time.perf_counter() - t
    threads = wrapper_llama.n_threads

    from llama_cpp import Llama

    # the same load as the generator's (no AMX buffers where AMX traps), same sampling, same stops
    with without_extra_buffers(gen.n_gpu_layers == 0 and amx_traps(model)):
        direct = Llama(model_path=str(model), n_ctx=gen.context_window, n_gpu_layers=gen.n_gpu_layers,
                       n_threads=threads, n_threads_batch=wrapper_llama.n_threads_batch,
                       n_batch=wrapper_llama.n_batch, chat_format="chat_template.default", verbose=False)
    sampling = gen.sampling.llamacpp_kwargs()

    # Fit passages into prompt-tokens: the budget left after the answer is what the prompt may use.
    base, used = build_messages(question, passages, gen.count_tokens, args.prompt_tokens + args.max_tokens,
                                args.max_tokens)
    prompt_tokens = len(wrapper_llama.tokenize(gen.render_prompt(base).encode(), add_bos=False, special=True))

    def messages_for(run: int) -> list[ChatMessage]:
        return [ChatMessage("system", f"Run {run}. " + base[0].content), *base[1:]]

    rows: dict[str, list[dict]] = {"generator": [], "direct": []}
    same_text = True
    for run in range(-1, args.runs):  # run -1 warms both up and is not counted
        order = ["generator", "direct"] if run % 2 == 0 else ["direct", "generator"]
        texts = {}
        for name in order:
            msgs = messages_for(run)
            stream = (gen.stream(msgs, args.max_tokens, 0.0) if name == "generator"
                      else direct_stream(direct, msgs, args.max_tokens, sampling))
            result = timed(stream)
            texts[name] = result.pop("text")
            if run >= 0:
                rows[name].append(result)
        same_text &= texts["generator"] == texts["direct"]

    summary = {}
    for name, rs in rows.items():
        summary[name] = {
            "ttft_s": statistics.median(r["ttft_s"] for r in rs),
            "tok_per_s": statistics.median(r["tok_per_s"] for r in rs),
            "tokens": statistics.median(r["tokens"] for r in rs),
            "total_s": statistics.median(r["total_s"] for r in rs),
        }
    g, d = summary["generator"], summary["direct"]
    report = {
        "model": model.name,
        "source": f"scifact:{corpus}" if corpus else "synthetic",
        "prompt_tokens": prompt_tokens,
        "passages": len(used),
        "max_tokens": args.max_tokens,
        "runs": args.runs,
        "threads": threads,
        "gpu_layers": gen.n_gpu_layers,
        "load_s": load_s,
        "same_output": same_text,
        "generator": g,
        "direct": d,
        "overhead_ttft_pct": 100 * (g["ttft_s"] - d["ttft_s"]) / d["ttft_s"],
        "overhead_tok_per_s_pct": 100 * (d["tok_per_s"] - g["tok_per_s"]) / d["tok_per_s"],
        "runs_detail": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model {model.name}  prompt {prompt_tokens} tokens ({len(used)} passages, {report['source']})  "
          f"max_tokens {args.max_tokens}  threads {threads}  gpu layers {gen.n_gpu_layers}  "
          f"runs {args.runs} (median)  load {load_s:.2f}s")
    print(f"{'path':<12}{'TTFT s':>10}{'tok/s':>10}{'tokens':>9}{'total s':>10}")
    for name in ("direct", "generator"):
        s = summary[name]
        print(f"{name:<12}{s['ttft_s']:>10.3f}{s['tok_per_s']:>10.1f}{s['tokens']:>9.0f}{s['total_s']:>10.2f}")
    print(f"overhead: TTFT {report['overhead_ttft_pct']:+.1f}%  decode {report['overhead_tok_per_s_pct']:+.1f}%"
          f"  (same output: {same_text})")


if __name__ == "__main__":
    main()
