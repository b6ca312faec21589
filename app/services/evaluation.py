"""`kb eval retrieval` and `kb eval answers`: push a labelled set through the real ingestion pipeline (PII
scrubbing on, as users run it) into a throw-away data dir, then score the real search (BEIR qrels) or the
real question-answer service, the one the UI calls (SQuAD-format sets: SQuAD 2.0, CMRC2018)."""

from __future__ import annotations

import json
import math
import random
import re
import tempfile
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from app import accounts
from app.errors import KbError
from app.models import Chunk, Document
from app.services.container import Container
from app.services.setup import init
from app.settings import Settings
from ingest.submit import submit_paths
from ingest.worker import Worker
from llm.prompt import strip_citations
from retrieval.evaluate import doc_hits
from retrieval.metrics import evaluate

Progress = Callable[[str, int, int], None]


def file_names(corpus: Mapping[str, object]) -> dict[str, str]:
    """Corpus id -> the neutral file name it is written under (ids may hold path characters)."""
    return {doc_id: f"d{i:07d}.md" for i, doc_id in enumerate(corpus)}


def write_corpus(corpus: Mapping[str, Mapping[str, str]], folder: Path) -> None:
    """One Markdown file per document: the title as heading, so chunks carry it."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, name in file_names(corpus).items():
        doc = corpus[doc_id]
        title, text = (doc.get("title") or "").strip(), (doc.get("text") or "").strip()
        (folder / name).write_text((f"# {title}\n\n" if title else "") + text, encoding="utf-8")


def _eval_settings(settings: Settings, root: Path) -> Settings:
    """The settings with a throw-away data dir and SQLite, keeping the compiled embedder of the real one
    (recompiling it for OpenVINO would cost a minute per run)."""
    r = settings.retrieval.model_copy(update={"embed_cache_dir": settings.embedder_cache_dir.resolve()})
    return settings.model_copy(update={"data_dir": root / "data", "retrieval": r,
                                       "database": settings.database.model_copy(update={"url": None})})


def _ingest(settings: Settings, corpus: Mapping[str, Mapping[str, str]], root: Path,
            progress: Progress | None, pii: str = "all") -> tuple[Container, dict[int, str], Worker, float]:
    """A fresh kb under ``root`` holding ``corpus`` (id -> title, text) in a collection with PII policy
    ``pii``, ingested by the real worker. Returns the container, chunk id -> corpus id, the worker (its
    stage times) and the seconds taken."""
    s = _eval_settings(settings, root)
    c = Container(s)
    init(c, "admin", "eval-admin-password")
    with c.sessions.begin() as sess:
        accounts.add_collection(sess, "eval", "kb eval", pii)
    names = {name: doc_id for doc_id, name in file_names(corpus).items()}
    write_corpus(corpus, root / "corpus")
    t0 = time.perf_counter()
    queued = [x for x in submit_paths(c, [root / "corpus"], "eval") if x.outcome == "queued"]
    worker = Worker(c)
    done = 0

    def tick(_doc: int, _status: object) -> None:
        nonlocal done
        done += 1
        if progress:
            progress("ingest", done, len(queued))

    worker.run_once(on_done=tick)
    ingest_s = time.perf_counter() - t0
    with c.sessions() as sess:
        chunk_to_doc = {cid: names[src.rsplit("/", 1)[-1]] for cid, src in sess.execute(
            select(Chunk.id, Document.source).join(Document, Document.id == Chunk.document_id))}
    c.search_index.refresh()
    return c, chunk_to_doc, worker, ingest_s


def indexed_texts(c: Container) -> dict[str, list[str]]:
    """Document source file name -> the text of its chunks as stored (after PII scrubbing and chunking)."""
    out: dict[str, list[str]] = {}
    with c.sessions() as s:
        for ch, doc in s.execute(select(Chunk, Document).join(Document, Document.id == Chunk.document_id)
                                 .order_by(Chunk.id)):
            text = c.vault.open_text(c.vault.data_key(s, doc.dek_id), ch.text_sealed, "chunks", doc.id, ch.idx)
            out.setdefault(doc.source.rsplit("/", 1)[-1], []).append(text)
    return out


def run(settings: Settings, corpus: Mapping[str, Mapping[str, str]], queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]], modes: list[str], data_dir: Path | None = None,
        progress: Progress | None = None, depth: int = 100) -> dict:
    with tempfile.TemporaryDirectory(prefix="kb-eval-") as tmp:
        root = data_dir or Path(tmp)
        c, chunk_to_doc, worker, ingest_s = _ingest(settings, corpus, root, progress)
        s = c.settings
        evaluated = {q: t for q, t in queries.items() if q in qrels}
        results: dict[str, dict] = {}
        for mode in modes:
            run_: dict[str, list[tuple[str, float]]] = {}
            latencies = []
            for i, (qid, text) in enumerate(evaluated.items()):
                t = time.perf_counter()
                hits = c.search_index.search(text, depth * 2, None, mode=mode)
                latencies.append(time.perf_counter() - t)
                run_[qid] = doc_hits(hits, chunk_to_doc)[:depth]
                if progress:
                    progress(mode, i + 1, len(evaluated))
            scores = evaluate(run_, {q: dict(r) for q, r in qrels.items() if q in evaluated})
            latencies.sort()
            scores["p50_ms"] = round(1000 * latencies[len(latencies) // 2], 1) if latencies else None
            results[mode] = scores
        return {
            "documents": len(corpus), "queries": len(evaluated), "chunks": len(chunk_to_doc),
            "ingest_seconds": round(ingest_s, 1), "stage_seconds": {k: round(v, 1) for k, v in
                                                                   worker.times.seconds.items()},
            "pii_scrubbing": s.pii.enabled, "modes": results,
        }


# --- kb eval answers -----------------------------------------------------------------------------

@dataclass
class QaItem:
    id: str
    question: str
    answers: list[str]  # gold answers; empty when unanswerable
    answerable: bool
    paragraph: str  # corpus id of the paragraph the question was written on


@dataclass
class QaSet:
    name: str
    paragraphs: dict[str, dict[str, str]]  # corpus id -> {"title", "text"}
    items: list[QaItem]


def load_squad(path: Path) -> QaSet:
    """A SQuAD-format file (SQuAD 1.1/2.0, CMRC2018): ``data[].paragraphs[].{context, qas[]}``, unanswerable
    questions marked ``is_impossible`` (SQuAD 2.0). A folder is searched for its one ``*dev*.json``."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("*dev*.json")) or sorted(path.rglob("*.json"))
        if not found:
            raise KbError(f"{path} holds no SQuAD-format .json file.")
        path = found[0]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KbError(f"{path} is not a SQuAD-format file ({type(exc).__name__}: {exc}).") from None
    paragraphs: dict[str, dict[str, str]] = {}
    items: list[QaItem] = []
    for article in data:
        for para in article.get("paragraphs", []):
            pid = f"p{len(paragraphs)}"
            paragraphs[pid] = {"title": article.get("title") or "", "text": para["context"]}
            for qa in para.get("qas", []):
                gold = list(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a.get("text", "").strip()))
                answerable = not qa.get("is_impossible", False) and bool(gold)
                items.append(QaItem(str(qa["id"]), qa["question"].strip(), gold if answerable else [],
                                    answerable, pid))
    return QaSet(path.name, paragraphs, items)


def sample_questions(items: list[QaItem], n: int | None, seed: int) -> list[QaItem]:
    """``n`` questions drawn with a fixed seed, stratified: answerable and unanswerable in the set's
    proportions (each kind at least once when the set has it and n allows), in a shuffled order so a run
    stopped early is still a fair sample."""
    rng = random.Random(seed)
    strata = [[q for q in items if q.answerable], [q for q in items if not q.answerable]]
    if n is None or n >= len(items):
        chosen = [q for s in strata for q in s]
    else:
        share = round(n * len(strata[1]) / len(items))
        if strata[1] and n > 1:
            share = min(max(share, 1), n - 1)
        want = [n - share, share]
        chosen = [q for s, k in zip(strata, want, strict=True) for q in rng.sample(s, min(k, len(s)))]
    rng.shuffle(chosen)
    return chosen


_ARTICLES = frozenset(("a", "an", "the"))


def _strip_punct(text: str) -> str:
    return "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)


def normalize(text: str, lang: str) -> str:
    """Text as answers are compared: citation markers dropped, case folded, punctuation removed; spaces
    collapsed (English, and the articles a/an/the dropped as SQuAD's own script does) or removed (Chinese,
    where spacing is arbitrary)."""
    text = _strip_punct(strip_citations(unicodedata.normalize("NFKC", text)).casefold())
    if lang == "zh":
        return "".join(text.split())
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def contains_answer(text: str, gold: list[str], lang: str) -> bool:
    """Whether a gold answer appears in ``text``, normalised; whole words only in English ("10" is not in
    "100")."""
    hay = normalize(text, lang)
    for g in gold:
        g = normalize(g, lang)
        if g and (g in hay if lang == "zh" else f" {g} " in f" {hay} "):
            return True
    return False


_SENTENCE = re.compile(r"(?<=[。！？；\n])\s*|(?<=[.!?;])\s+")  # not inside "3.3"


def repeats_itself(answer: str, finish_reason: str | None = None) -> bool:
    """Cut by the repetition stop, or a sentence (of some substance) written twice."""
    if finish_reason == "repetition":
        return True
    seen: set[str] = set()
    for sentence in _SENTENCE.split(answer):
        key = normalize(sentence, "zh")
        if len(key) < 12:
            continue
        if key in seen:
            return True
        seen.add(key)
    return False


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of the values present."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


@dataclass
class ModelUnderTest:
    label: str
    llm: object  # LlmSettings for this model


def resolve_models(settings: Settings, models: list[str]) -> list[ModelUnderTest]:
    """Each ``--model``: a GGUF path, or a name/file recorded in the models dir; none = the configured one."""
    from llm.models import default_model_path

    if not models:
        cfg = settings.llm
        if cfg.backend == "llamacpp" and not cfg.model_path:  # pin it: the eval runs in another data dir
            path = default_model_path(settings.models_dir, cfg.model).resolve()
            cfg = cfg.model_copy(update={"model_path": path})
            return [ModelUnderTest(path.stem, cfg)]
        return [ModelUnderTest(cfg.openai_model if cfg.backend == "openai" else Path(cfg.model_path).stem, cfg)]
    out = []
    for m in models:
        p = Path(m).expanduser()
        path = p.resolve() if p.is_file() else default_model_path(settings.models_dir, m).resolve()
        cfg = settings.llm.model_copy(update={"backend": "llamacpp", "model_path": path, "model_sha256": None})
        out.append(ModelUnderTest(m if not p.is_file() else path.stem, cfg))
    labels = [m.label for m in out]
    if len(set(labels)) != len(labels):
        raise KbError(f"The same model is named twice: {', '.join(labels)}.")
    return out


def paragraphs_for(qa_set: QaSet, chosen: list[QaItem], max_paragraphs: int | None) -> dict[str, dict[str, str]]:
    """The set's paragraphs, or (``max_paragraphs``) the chosen questions' ones plus others in the set's order up to
    that many."""
    corpus = qa_set.paragraphs
    if max_paragraphs is None or max_paragraphs >= len(corpus):
        return corpus
    keep = dict.fromkeys(q.paragraph for q in chosen)
    for pid in corpus:
        if len(keep) >= max_paragraphs:
            break
        keep.setdefault(pid, None)
    return {pid: corpus[pid] for pid in corpus if pid in keep}


def gated_passages(c: Container, question: str) -> tuple[list, list]:
    """The passages ``question`` retrieves as `kb ask` searches it (top_k, every collection), and those the
    relevance gate gives the model (none: the gate refuses it). For benchmarks of the steps after retrieval."""
    from app.services import qa
    from app.services.search import hydrate

    with c.sessions() as s:
        ranked = hydrate(c, s, c.search_index.search(question, c.settings.retrieval.top_k, None))
    given, _why = qa._relevant(ranked, question, c.settings.retrieval)
    return ranked, given


def _ask_one(c: Container, caller, item: QaItem, lang: str, indexed: list[str]) -> dict:
    """One question asked as the UI asks it, scored. ``indexed``: its paragraph's chunks as stored."""
    from app.services import qa

    t0 = time.perf_counter()
    sources_ms = None
    res = None
    for ev in qa.ask(c, caller, item.question):
        if ev.kind == "passages" and sources_ms is None:
            sources_ms = (time.perf_counter() - t0) * 1000
        elif ev.kind == "done":
            res = ev.result
    assert res is not None
    by_n = {i + 1: p for i, p in enumerate(res.passages)}
    cited_text = [by_n[ci.n].text for ci in res.citations if ci.n in by_n]
    declined = res.refused or qa.declines(res.answer)
    correct = item.answerable and not declined and contains_answer(res.answer, item.answers, lang)
    return {
        "id": item.id, "question": item.question, "answerable": item.answerable, "gold": item.answers,
        "answer": res.answer, "refused_by_gate": res.refused, "declined_by_model": declined and not res.refused,
        "declined": declined, "refusal_reason": res.refusal_reason, "correct": correct,
        "cited": bool(cited_text),
        "citation_ok": (any(contains_answer(t, item.answers, lang) for t in cited_text)
                        if item.answerable and cited_text else None),
        "gold_indexed": (any(contains_answer(t, item.answers, lang) for t in indexed) if item.answerable else None),
        "gold_retrieved": (any(contains_answer(p.text, item.answers, lang) for p in res.passages)
                           if item.answerable else None),
        "gold_read": (any(contains_answer(t, item.answers, lang) for t in res.read)
                      if item.answerable and not res.refused else None),
        "top_dense": max((p.dense_score for p in res.passages if p.dense_score is not None), default=None),
        "repeated": not res.refused and repeats_itself(res.answer, getattr(res, "finish_reason", None)),
        "sources_ms": round(sources_ms, 1) if sources_ms is not None else None,
        "first_token_ms": res.timings.get("first_token_ms"), "tokens_per_s": res.timings.get("tokens_per_s"),
        "tokens": res.tokens, "total_ms": res.timings.get("total_ms"), "passages": len(res.passages),
    }


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 3) if den else None


def summarize(rows: list[dict]) -> dict:
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]
    answered_cited = [r for r in ans if not r["declined"] and r["cited"]]
    generated = [r for r in rows if not r["refused_by_gate"]]
    ttft = [r["first_token_ms"] for r in generated]
    return {
        "questions": len(rows), "answerable": len(ans), "unanswerable": len(una),
        "accuracy": _rate(sum(r["correct"] for r in ans), len(ans)),
        "false_refusals": _rate(sum(r["declined"] for r in ans), len(ans)),
        "false_refusals_by_gate": _rate(sum(r["refused_by_gate"] for r in ans), len(ans)),
        "false_refusals_by_model": _rate(sum(r["declined_by_model"] for r in ans), len(ans)),
        "gold_indexed": _rate(sum(bool(r["gold_indexed"]) for r in ans), len(ans)),
        "gold_retrieved": _rate(sum(bool(r["gold_retrieved"]) for r in ans), len(ans)),
        "gold_read": _rate(sum(bool(r["gold_read"]) for r in ans), len(ans)),
        "unanswerable_declined": _rate(sum(r["declined"] for r in una), len(una)),
        "unanswerable_declined_by_gate": _rate(sum(r["refused_by_gate"] for r in una), len(una)),
        "citation_correct": _rate(sum(bool(r["citation_ok"]) for r in answered_cited), len(answered_cited)),
        "answered_with_citation": _rate(len(answered_cited), sum(not r["declined"] for r in ans)),
        "repeated": sum(r["repeated"] for r in rows),
        "first_token_s": {"p50": _s(pct(ttft, 0.5)), "p95": _s(pct(ttft, 0.95))},
        "tokens_per_s": {"p50": pct([r["tokens_per_s"] for r in generated], 0.5)},
        "sources_ms": {"p50": pct([r["sources_ms"] for r in rows], 0.5),
                       "p95": pct([r["sources_ms"] for r in rows], 0.95)},
    }


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 2)


def run_answers(settings: Settings, qa_set: QaSet, models: list[str] | None = None, n: int | None = None,
                seed: int = 0, progress: Progress | None = None, max_paragraphs: int | None = None,
                time_limit_s: float | None = None, pii: str = "all") -> dict:
    """Ingest the set's paragraphs into a throw-away kb, ask ``n`` sampled questions through
    :func:`app.services.qa.ask` with each model (same ingestion, questions interleaved across models so a
    busy machine slows them alike), and score them. ``max_paragraphs`` ingests only the sampled questions'
    paragraphs plus others (in the set's order) up to that many. After ``time_limit_s`` of asking no new
    question is started; the report covers those asked (the sample is shuffled, so still a fair one).
    ``pii``: the PII policy of the collection the paragraphs go into (app.accounts.PII_POLICIES)."""
    from app.services import qa
    from llm.prompt import detect_language
    from llm.types import ChatMessage

    chosen = sample_questions(qa_set.items, n, seed)
    if not chosen:
        raise KbError(f"{qa_set.name} has no questions.")
    under_test = resolve_models(settings, list(models or []))
    for m in under_test:  # a sampling seed, so two runs of the same code give the same answers
        if m.llm.seed is None:
            m.llm = m.llm.model_copy(update={"seed": seed})
    corpus = paragraphs_for(qa_set, chosen, max_paragraphs)
    lang = detect_language(" ".join(q.question for q in chosen[:20]))
    with tempfile.TemporaryDirectory(prefix="kb-eval-") as tmp:
        c, chunk_to_doc, worker, ingest_s = _ingest(settings, corpus, Path(tmp), progress, pii)
        containers = []
        for m in under_test:
            mc = Container(c.settings.model_copy(update={"llm": m.llm}))
            # one database, one index and one embedder for every model: only the generator differs
            for shared in ("engine", "sessions", "vault", "embedder", "search_index"):
                mc.__dict__[shared] = getattr(c, shared)
            containers.append(mc)
        caller = qa.caller_for(c, None, "cli")
        names = file_names(corpus)
        stored = indexed_texts(c)
        if progress:
            progress("load", 0, len(containers))
        c.search_index.search(chosen[0].question, c.settings.retrieval.top_k, None)  # warm the query path
        for i, mc in enumerate(containers):  # load each model outside the timings
            list(mc.generator.stream([ChatMessage("user", "Hello")], 4, 0.0))
            if progress:
                progress("load", i + 1, len(containers))
        rows: dict[str, list[dict]] = {m.label: [] for m in under_test}
        total, done = len(chosen) * len(containers), 0
        started, stopped_early = time.perf_counter(), False
        for item in chosen:
            if time_limit_s is not None and time.perf_counter() - started > time_limit_s:
                stopped_early = True
                break
            for m, mc in zip(under_test, containers, strict=True):
                rows[m.label].append(_ask_one(mc, caller, item, lang, stored.get(names[item.paragraph], [])))
                done += 1
                if progress:
                    progress("answers", done, total)
        models_out = {}
        for m, mc in zip(under_test, containers, strict=True):
            models_out[m.label] = {"model": mc.generator.model_name, "sha256": mc.generator.model_sha256,
                                   **summarize(rows[m.label])}
        return {
            "set": qa_set.name, "language": lang, "seed": seed, "paragraphs": len(corpus),
            "chunks": len(chunk_to_doc), "ingest_seconds": round(ingest_s, 1),
            "pii_scrubbing": c.settings.pii.enabled, "pii_policy": pii, "top_k": c.settings.retrieval.top_k,
            "sampled": len(chosen), "stopped_early": stopped_early,
            "asking_seconds": round(time.perf_counter() - started, 1),
            "models": models_out, "questions": rows,
        }
