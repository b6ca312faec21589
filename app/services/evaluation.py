"""`kb eval retrieval`: push a BEIR-format corpus through the real ingestion pipeline (PII scrubbing on,
as users run it) into a throw-away data dir, ask every query through the real search, and score."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy import select

from app.models import Chunk, Document
from app.services.container import Container
from app.services.setup import init
from app.settings import Settings
from ingest.submit import submit_paths
from ingest.worker import Worker
from retrieval.evaluate import doc_hits
from retrieval.metrics import evaluate

Progress = Callable[[str, int, int], None]


def write_corpus(corpus: Mapping[str, Mapping[str, str]], folder: Path) -> None:
    """One Markdown file per document: the title as heading, so chunks carry it."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(corpus.values()):
        title, text = (doc.get("title") or "").strip(), (doc.get("text") or "").strip()
        # a neutral file name (ids may hold path characters); the id map is kept by source name
        (folder / f"d{i:07d}.md").write_text((f"# {title}\n\n" if title else "") + text, encoding="utf-8")


def run(settings: Settings, corpus: Mapping[str, Mapping[str, str]], queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]], modes: list[str], data_dir: Path | None = None,
        progress: Progress | None = None, depth: int = 100) -> dict:
    with tempfile.TemporaryDirectory(prefix="kb-eval-") as tmp:
        root = data_dir or Path(tmp)
        s = settings.model_copy(update={"data_dir": root / "data",
                                        "database": settings.database.model_copy(update={"url": None})})
        c = Container(s)
        init(c, "admin", "eval-admin-password")
        names = {f"d{i:07d}.md": doc_id for i, doc_id in enumerate(corpus)}
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
