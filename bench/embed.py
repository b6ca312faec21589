"""Passage-embedding speed and retrieval quality per precision / batch / thread / length option.

    .venv/bin/python bench/embed.py [--data ../shared/data] [--n 2000] [--quality] [--onnx] [--json]

Speed: chunks/s and word-piece tokens/s on ``--n`` real SciFact chunks, cut by ingest's own chunker
(200 tokens, 30 overlap, title on the first chunk) with the embedder's tokenizer. Every option runs
``--repeat`` times and the best run counts (the machine may be shared: the load average is printed).
Quality (``--quality``): dense-only nDCG@10 on SciFact (train qrels, one passage per document,
title + text) with each option's own passage and query vectors.

The OpenVINO options build their models into ``--cache`` once (int8: NNCF, calibrated on
``retrieval/data/calibration.txt``).

``--onnx`` adds ONNX Runtime options (fp32 with fused attention, int8 with per-channel weights), if
onnxruntime and onnx are installed; the local model is exported into ``--cache`` (nothing downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.chunking import chunk_sections  # noqa: E402
from ingest.types import Section  # noqa: E402
from retrieval.embedder import SentenceTransformerEmbedder  # noqa: E402
from retrieval.evaluate import beir_passages  # noqa: E402
from retrieval.metrics import evaluate, load_beir_corpus, load_beir_queries, load_qrels  # noqa: E402

Encode = Callable[[list[str]], np.ndarray]


@dataclass
class Option:
    name: str
    precision: str = "fp32"  # fp32 | bf16 | int8 | onnx-fp32 | onnx-int8 | ov-int8 | ov-bf16 | ov-fp32
    batch: int = 64
    threads: int | None = None  # None = torch's default
    max_tokens: int | None = None  # None = the model's own (256)
    sort: bool = True  # one encode call (sentence-transformers sorts by length) vs one call per batch
    quality: bool = False  # also measure nDCG@10
    result: dict[str, float] = field(default_factory=dict)


def options(onnx: bool) -> list[Option]:
    opts = [
        Option("fp32 bs16", batch=16),
        Option("fp32 bs32", batch=32),
        Option("fp32 bs64 (today)", quality=True),
        Option("fp32 bs128", batch=128),
        Option("fp32 1 thread", threads=1),
        Option("fp32 unsorted", sort=False),
        Option("fp32 max128", max_tokens=128, quality=True),
        Option("bf16 bs32", "bf16", batch=32),
        Option("bf16", "bf16", quality=True),
        Option("bf16 bs128", "bf16", batch=128),
        Option("bf16 1 thread", "bf16", threads=1),
        Option("bf16 max128", "bf16", max_tokens=128, quality=True),
        Option("int8 torch", "int8", quality=True),
        Option("int8 torch 1 thread", "int8", threads=1),
        Option("openvino int8 (default with VNNI)", "ov-int8", batch=32, quality=True),
        Option("openvino int8 bs64", "ov-int8", batch=64),
        Option("openvino int8 1 thread", "ov-int8", batch=32, threads=1),
        Option("openvino bf16", "ov-bf16", batch=32),
        Option("openvino fp32 (default without)", "ov-fp32", batch=32, quality=True),
    ]
    if onnx:
        opts += [Option("onnx fp32", "onnx-fp32", quality=True), Option("onnx int8", "onnx-int8", quality=True),
                 Option("onnx int8 1 thread", "onnx-int8", threads=1)]
    return opts


# ---- ONNX Runtime (bench only: it would add a dependency to the product) --------------------------------


def _onnx_files(model_dir: Path, cache: Path) -> tuple[Path, Path]:
    """Export the local model once (eager attention, so ORT fuses it), optimize, quantize to int8."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel, AutoTokenizer

    cache.mkdir(parents=True, exist_ok=True)
    raw, fp32, int8 = cache / "raw.onnx", cache / "fp32.onnx", cache / "int8.onnx"
    if int8.exists() and fp32.exists():
        return fp32, int8
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", local_files_only=True).eval()
    cfg = bert.config
    names = ["input_ids", "attention_mask", "token_type_ids"]
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    sample = tok(["a b", "a longer sample text"], padding=True, return_tensors="pt")

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    torch.onnx.export(Hidden(), tuple(sample[k] for k in names), str(raw), dynamo=False, input_names=names,
                      output_names=["hidden"], opset_version=17,
                      dynamic_axes={k: {0: "batch", 1: "seq"} for k in [*names, "hidden"]})
    optimizer.optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                             hidden_size=cfg.hidden_size).save_model_to_file(str(fp32))
    # Per-channel weights: per-tensor int8 breaks MiniLM's FFN output layers (cosine to fp32 ~0.9).
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return fp32, int8


def _onnx_encoder(path: Path, emb: SentenceTransformerEmbedder, opt: Option) -> Encode:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = opt.threads or os.cpu_count() or 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    tok = emb.tokenizer
    max_len = opt.max_tokens or emb.max_tokens

    def encode(texts: list[str]) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts]) if opt.sort else np.arange(len(texts))
        out = np.empty((len(texts), emb.dim), dtype=np.float32)
        for i in range(0, len(texts), opt.batch):
            idx = order[i : i + opt.batch]
            enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=max_len, return_tensors="np")
            feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = sess.run(None, feeds)[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            vecs = (hidden * mask).sum(1) / mask.sum(1)
            out[idx] = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        return out

    return encode


# ---- options -> encoders ---------------------------------------------------------------------------------


def encoder(opt: Option, cache: Path) -> Encode:
    import torch

    torch.set_num_threads(opt.threads or DEFAULT_THREADS)
    if opt.precision.startswith("ov-"):
        from retrieval.embedder_openvino import OpenVinoEmbedder

        ov = OpenVinoEmbedder(precision=opt.precision[3:], batch_size=opt.batch, max_tokens=opt.max_tokens,
                              threads=opt.threads, cache_dir=cache / "openvino")
        return ov.embed_passages
    if opt.precision.startswith("onnx"):
        base = SentenceTransformerEmbedder(precision="fp32")
        fp32, int8 = _onnx_files(base.model_dir, cache / "onnx")
        return _onnx_encoder(fp32 if opt.precision == "onnx-fp32" else int8, base, opt)
    emb = SentenceTransformerEmbedder(precision=opt.precision, batch_size=opt.batch, max_tokens=opt.max_tokens)  # type: ignore[arg-type]
    if opt.sort:
        return emb.embed_passages
    return lambda texts: np.concatenate(
        [emb.embed_passages(texts[i : i + opt.batch]) for i in range(0, len(texts), opt.batch)]
    )


def scifact_chunks(data: Path, n: int, emb: SentenceTransformerEmbedder) -> list[str]:
    chunks: list[str] = []
    with open(data / "beir_scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            parts = chunk_sections([Section(doc["text"])], emb.token_spans, 200, 30, title=doc["title"] or None)
            chunks += [c.text for c in parts]
            if len(chunks) >= n:
                break
    return chunks[:n]


def speed(enc: Encode, chunks: list[str], n_tokens: int, repeat: int) -> dict[str, float]:
    enc(chunks[:16])  # warm-up: first-call allocations, oneDNN kernel selection
    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        vecs = enc(chunks)
        best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    assert vecs.dtype == np.float32 and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    # chunks per CPU-second: steadier than wall time when other jobs share the cores.
    return {"seconds": best, "chunks_per_s": len(chunks) / best, "tokens_per_s": n_tokens / best,
            "chunks_per_cpu_s": len(chunks) / cpu, "load": os.getloadavg()[0]}


def quality(enc: Encode, data: Path, ref: np.ndarray | None, cache: Path) -> tuple[dict[str, float], np.ndarray]:
    """nDCG@10 and recall@100 of dense retrieval; document vectors cached per option in ``cache``."""
    root = data / "beir_scifact"
    corpus = load_beir_corpus(root / "corpus.jsonl")
    qrels = load_qrels(root / "qrels" / "train.tsv")
    queries = {q: t for q, t in load_beir_queries(root / "queries.jsonl").items() if q in qrels}
    passages, chunk_to_doc = beir_passages(corpus)
    docs = np.load(cache, allow_pickle=False) if cache.exists() else None
    if docs is None or docs.shape[0] != len(passages):
        docs = enc(passages)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, docs, allow_pickle=False)
    qids = list(queries)
    qvecs = enc([queries[q] for q in qids])
    scores = qvecs @ docs.T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: [(chunk_to_doc[int(j)], float(scores[i, j])) for j in top[i]] for i, q in enumerate(qids)}
    out = evaluate(run, qrels, ("ndcg@10", "recall@100"))
    if ref is not None:
        cos = (docs * ref).sum(1)
        out |= {"cos_min": float(cos.min()), "cos_mean": float(cos.mean())}
    return out, docs


_DIGITS = {"tokens_per_s": 0, "chunks_per_s": 1, "chunks_per_cpu_s": 1, "load": 1}


def _table(opts: Sequence[Option], n: int, n_tokens: int) -> str:
    cols = ["chunks_per_s", "tokens_per_s", "chunks_per_cpu_s", "load", "ndcg@10", "recall@100", "cos_mean", "cos_min"]
    lines = [f"{n} SciFact chunks, {n_tokens} word pieces ({n_tokens / n:.0f}/chunk); "
             f"torch threads default = {DEFAULT_THREADS}", f"{'option':<22}" + "".join(f"{c:>17}" for c in cols)]
    for o in opts:
        cells = [f"{o.result[c]:>17.{_DIGITS.get(c, 4)}f}" if c in o.result else f"{'':>17}" for c in cols]
        lines.append(f"{o.name:<22}" + "".join(cells))
    return "\n".join(lines)


DEFAULT_THREADS = 1


def main() -> None:
    global DEFAULT_THREADS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--n", type=int, default=2000, help="Chunks to time.")
    ap.add_argument("--repeat", type=int, default=1, help="Timed runs per option (best counts).")
    ap.add_argument("--quality", action="store_true", help="Also measure SciFact nDCG@10 (slow: 6k texts/option).")
    ap.add_argument("--onnx", action="store_true", help="Add ONNX Runtime options (needs onnxruntime, onnx).")
    ap.add_argument("--only", nargs="*", default=None, help="Run only the options with these names.")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/kb-embed-bench"),
                    help="Folder for the ONNX export and per-option SciFact document vectors (delete to re-embed).")
    ap.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = ap.parse_args()

    import torch

    DEFAULT_THREADS = torch.get_num_threads()
    base = SentenceTransformerEmbedder(precision="fp32")
    chunks = scifact_chunks(args.data, args.n, base)
    n_tokens = sum(len(ids) for ids in base.tokenizer(chunks, truncation=False)["input_ids"])
    opts = [o for o in options(args.onnx) if not args.only or o.name in args.only]
    ref = None
    for opt in opts:
        enc = encoder(opt, args.cache)
        opt.result = speed(enc, chunks, n_tokens, args.repeat)
        if args.quality and opt.quality:
            slug = "".join(ch if ch.isalnum() else "-" for ch in opt.name)
            q, docs = quality(enc, args.data, ref, args.cache / "quality" / f"{slug}.npy")
            opt.result |= q
            if ref is None and opt.precision == "fp32" and opt.max_tokens is None:
                ref = docs
        print(f"{opt.name}: {opt.result}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"chunks": len(chunks), "tokens": n_tokens, "default_threads": DEFAULT_THREADS,
                          "options": [asdict(o) for o in opts]}, indent=2))
    else:
        print(_table(opts, len(chunks), n_tokens))


if __name__ == "__main__":
    main()
