"""The admin's retrieval test ranks as questions rank, shows every score part, and says what the gate would do."""

from __future__ import annotations

import pytest

from app import accounts
from app.errors import KbError, NotFound, PermissionDenied
from app.services import auditing, qa, retrieval_test
from ingest.submit import submit_paths
from ingest.worker import Worker

pytestmark = pytest.mark.slow

DOCS = {
    "hr": {"leave.md": "Employees receive 25 days of paid annual leave per calendar year, approved by the line "
                       "manager.",
           "travel.md": "Hotel costs are reimbursed up to 600 yuan per night; claims are filed within ten days."},
    "it": {"firewall.md": "Firewall rules must be reviewed by the security officer every month."},
}


@pytest.fixture
def kb(container, tmp_path):
    for collection, files in DOCS.items():
        folder = tmp_path / collection
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        list(submit_paths(container, [folder], collection))
    Worker(container).run_once()
    with container.sessions.begin() as s:
        accounts.add_user(s, "sam", "staff", "staff-password-1")
    return container


def test_known_chunk_first_with_scores_and_gate(kb):
    admin = qa.caller_for(kb, "admin", "ui")
    res = retrieval_test.run(kb, admin, "How many days of paid annual leave per year?", ["hr"], k=5)
    assert res.rows and res.rows[0].source.endswith("leave.md"), [r.source for r in res.rows]
    assert {r.collection for r in res.rows} == {"hr"}  # the firewall note of "it" is not a candidate
    top = res.rows[0]
    assert top.dense is not None and top.bm25 is not None and top.bm25 > 0 and top.dense_rank == 1
    assert top.passes_gate and top.gate_note is None and res.answerable and res.refusal_reason is None
    assert [r.rank for r in res.rows] == list(range(1, len(res.rows) + 1))
    assert all(a.fused >= b.fused for a, b in zip(res.rows, res.rows[1:], strict=False))
    # The same ranking a question gets from the search index.
    hits = kb.search_index.search(res.query, 5, {_cid(kb, "hr")})
    assert [h.chunk_id for h in hits] == [r.chunk_id for r in res.rows]

    # BM25 only: the dense score is still shown; the gate then goes by word overlap alone.
    lexical = retrieval_test.run(kb, admin, "firewall rules security officer", None, k=3, mode="bm25")
    assert lexical.mode == "bm25" and not lexical.similarity_used
    assert lexical.rows[0].source.endswith("firewall.md") and lexical.rows[0].dense is not None

    # Off-topic: ranked anyway, but the gate would refuse, with the gate's reason.
    off = retrieval_test.run(kb, admin, "Wer gewann die Fussballweltmeisterschaft?", ["it"], k=3)
    assert not off.answerable and off.refusal_reason and all(not r.passes_gate for r in off.rows)
    assert all(r.gate_note for r in off.rows)

    # Audited like a search, the query sealed.
    auditor_view = auditing.query(kb, admin, kind="query", contains="annual leave")
    assert any(v.action == "search.test" for v in auditor_view)


def _cid(kb, name: str) -> int:
    with kb.sessions() as s:
        return accounts.get_collection(s, name).id


def test_refusals(kb):
    admin, sam = qa.caller_for(kb, "admin", "ui"), qa.caller_for(kb, "sam", "ui")
    with pytest.raises(PermissionDenied):
        retrieval_test.run(kb, sam, "annual leave")
    with pytest.raises(KbError, match="Enter a query"):
        retrieval_test.run(kb, admin, "   ")
    with pytest.raises(NotFound):
        retrieval_test.run(kb, admin, "annual leave", ["no-such-collection"])
    with pytest.raises(KbError, match="between 1 and"):
        retrieval_test.run(kb, admin, "annual leave", k=0)
    with pytest.raises(KbError, match="Unknown retrieval mode"):
        retrieval_test.run(kb, admin, "annual leave", mode="fuzzy")
