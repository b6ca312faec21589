"""Retrieval test (hit testing) for admins: what a query retrieves from chosen collections and why.

The ranking is the one questions get (``SearchIndex.explain`` runs the same HybridSearcher and fusion as
``SearchIndex.search``), shown with its parts: dense similarity, BM25 score, fused score, each index's
rank, document and position, and whether the relevance gate (``qa._relevant``, applied to that one
passage) would let a question through on it. Run like a search, it is audited like one (the query
sealed), so auditors see what admins looked up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app import accounts, audit
from app.errors import KbError
from app.services import qa
from app.services.caller import Principal, actor, require_role
from app.services.search import embedder_knows, hydrate, lexical_coverage
from llm.prompt import detect_language

MAX_K = 50


@dataclass
class HitRow:
    rank: int
    chunk_id: int
    document_id: int
    source: str
    title: str | None
    collection: str
    position: str
    text: str
    fused: float
    dense: float | None
    bm25: float | None
    dense_rank: int | None  # rank in the dense candidate list (None: not among the candidates)
    bm25_rank: int | None
    coverage: float  # share of the query's terms in the passage
    passes_gate: bool  # the relevance gate would let a question through on this passage alone
    gate_note: str | None  # why not, in the gate's words


@dataclass
class HitTest:
    query: str
    collections: list[str]
    mode: str
    fusion: str
    alpha: float
    rrf_k: int
    min_score: float
    min_coverage: float
    similarity_used: bool  # whether the gate looks at dense similarity for this query (its language, the mode)
    answerable: bool  # whether a question would pass the gate on these passages (qa answers only then)
    refusal_reason: str | None
    took_ms: float
    rows: list[HitRow] = field(default_factory=list)


def run(container, who: Principal, query: str, collections: list[str] | None = None, k: int = 10,
        mode: str | None = None) -> HitTest:
    """Rank ``query`` against ``collections`` (names; None or empty: every collection) as a question would be.

    ``mode`` (dense | bm25 | hybrid) overrides retrieval.mode for this test only."""
    require_role(who, "admin")
    query = (query or "").strip()
    if not query:
        raise KbError("Enter a query to test.")
    if len(query) > qa.MAX_QUESTION_CHARS:
        raise KbError(f"The query is too long ({len(query):,} characters; at most {qa.MAX_QUESTION_CHARS:,}).")
    if not 1 <= k <= MAX_K:
        raise KbError(f"Show between 1 and {MAX_K} passages, not {k}.")
    if mode not in (None, "dense", "bm25", "hybrid"):
        raise KbError(f"Unknown retrieval mode {mode!r}: use dense, bm25 or hybrid.")
    r = container.settings.retrieval
    names = sorted({n.strip() for n in collections or [] if n and n.strip()})
    with container.sessions() as s:
        ids = {accounts.get_collection(s, n).id for n in names} if names else None  # NotFound names the bad one
    t0 = time.perf_counter()
    ex = container.search_index.explain(query, k, ids, mode=mode)
    with container.sessions() as s:
        passages = hydrate(container, s, ex.hits)
    took = round((time.perf_counter() - t0) * 1000, 1)
    gate = r.model_copy(update={"mode": ex.mode})  # the gate as it would run under the tested mode
    rows = []
    for n, p in enumerate(passages, 1):
        passed, note = qa._relevant([p], query, gate)
        rows.append(HitRow(n, p.chunk_id, p.document_id, p.source, p.title, p.collection, p.position, p.text,
                           p.score, p.dense_score, p.bm25_score, ex.dense_rank.get(p.chunk_id),
                           ex.bm25_rank.get(p.chunk_id), lexical_coverage(query, p.text), bool(passed),
                           None if passed else note))
    relevant, why_not = qa._relevant(passages, query, gate)
    with container.sessions.begin() as s:
        audit.append(s, container.vault, kind="query", action="search.test", actor=actor(who),
                     target=",".join(names)[:255] or None,
                     details={"retrieved": [{"chunk_id": p.chunk_id, "document_id": p.document_id,
                                             "score": round(p.score, 4)} for p in passages],
                              "k": k, "mode": ex.mode, "answerable": bool(relevant)},
                     sealed={"question": query})
    return HitTest(query, names, ex.mode, ex.fusion, ex.alpha, ex.rrf_k, r.gate_for(detect_language(query)),
                   r.min_coverage,
                   ex.mode != "bm25" and embedder_knows(r, query), bool(relevant), why_not, took, rows)
