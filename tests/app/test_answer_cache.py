"""The sealed answer cache through qa.ask with the real small model and real ingestion: a repeated question
is answered from it (no retrieval, no generation) in under 50 ms and audited as cached; another
conversation, other readable collections, a grant change, an index change or another model's setting
each miss; entries are sealed on disk and a damaged one is a miss."""

from __future__ import annotations

import shutil
import statistics
import time

import pytest
from sqlalchemy import select

from app import audit
from app.models import AuditRecord
from app.services import documents, qa, users
from app.services.caller import operator
from app.services.container import Container
from app.services.setup import init
from ingest.submit import submit_paths
from ingest.worker import Worker
from tests.conftest import make_settings

pytestmark = pytest.mark.slow
ADMIN = operator("cli")
LEAVE = ("# Annual leave policy\n\nEmployees receive 25 days of paid annual leave per calendar year. Up to five "
         "unused days may be carried over and must be taken by 31 March of the following year.\n")
SALARY = ("# Salary bands\n\nThe salary band for senior engineers is 91,000 to 118,000 per year. Bonuses are "
          "paid in March and depend on the company result.\n")
QUESTION = "How many days of paid annual leave do employees receive per year?"


@pytest.fixture
def kb(tmp_path, db_url, smollm2):
    c = Container(make_settings(tmp_path / "data", db_url, pii={"enabled": False}, llm={"max_tokens": 48},
                                cache={"answers": True}))
    init(c, "admin", "admin-password-1")
    models = c.settings.models_dir
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(smollm2.path, models / smollm2.path.name)
    shutil.copy(smollm2.path.parent / "manifest.json", models / "manifest.json")
    for name, text in (("hr", LEAVE), ("finance", SALARY)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}.md").write_text(text)
        list(submit_paths(c, [folder], name))
    Worker(c).run_once()
    users.create_user(c, ADMIN, "sam", "staff", "sam-password-1")
    users.grant(c, ADMIN, "hr", user="sam")
    yield c
    c.engine.dispose()


class Counting:
    """Counts calls of the real generator's stream and the real search (the test is about whether they run)."""

    def __init__(self, c, monkeypatch):
        self.generated = self.searched = 0
        gen, index = c.generator, c.search_index
        real_stream, real_search = gen.stream, index.search

        def stream(*a, **k):
            self.generated += 1
            return real_stream(*a, **k)

        def search(*a, **k):
            self.searched += 1
            return real_search(*a, **k)

        monkeypatch.setattr(gen, "stream", stream)
        monkeypatch.setattr(index, "search", search)


def _record(c, seq: int) -> tuple[AuditRecord, dict]:
    with c.sessions() as s:
        rec = s.scalar(select(AuditRecord).where(AuditRecord.seq == seq))
        return rec, audit.open_payload(s, c.vault, rec)


def test_repeated_question_is_answered_from_the_sealed_cache(kb, monkeypatch):
    sam = qa.caller_for(kb, "sam", "ui")
    calls = Counting(kb, monkeypatch)
    first = qa.ask_blocking(kb, sam, QUESTION)
    assert not first.refused and first.cached_from is None and calls.generated == 1
    rec, _ = _record(kb, first.audit_seq)
    assert "cached" not in rec.details

    hits, times = [], []
    for variant in (QUESTION, "  how many days of PAID annual leave do employees receive per year ", QUESTION + "??"):
        t = time.perf_counter()
        hits.append(qa.ask_blocking(kb, sam, variant))
        times.append((time.perf_counter() - t) * 1000)
    assert calls.generated == 1 and calls.searched == 1  # neither retrieval nor the model ran again
    for hit in hits:
        assert hit.cached_from == first.audit_seq and hit.audit_seq > first.audit_seq
        assert hit.answer == first.answer and hit.citations == first.citations
        assert [p.chunk_id for p in hit.passages] == [p.chunk_id for p in first.passages]
        assert [p.text for p in hit.passages] == [p.text for p in first.passages]
        assert hit.model == first.model and hit.tokens == 0 and "cache_ms" in hit.timings
        rec, payload = _record(kb, hit.audit_seq)
        assert rec.details["cached"] is True and rec.details["cached_from"] == first.audit_seq
        assert rec.outcome == "ok" and rec.actor == "sam" and payload["answer"] == first.answer
    assert hits[1].question.startswith("how many")  # recorded as asked, not as normalised
    # Finding and opening the cached answer (key, index state, file, decryption) takes under 50 ms; the
    # whole hit adds the audit record's commit (an fsync), which dominates on a loaded 2-core machine.
    assert statistics.median(h.timings["cache_ms"] for h in hits) < 50, [h.timings for h in hits]
    assert statistics.median(times) < 250, times

    # Streamed like a generated answer: passages, then the answer, then done.
    kinds = [e.kind for e in qa.ask(kb, sam, QUESTION)]
    assert kinds == ["passages", "answer", "done"]

    # Sealed on disk: neither the answer nor the question nor a passage is readable in the files.
    files = list(kb.settings.answer_cache_dir.glob("*.kbc"))
    assert len(files) == 1
    raw = files[0].read_bytes()
    for text in (first.answer, "annual leave", "25 days"):
        assert text.encode() not in raw
    assert len(kb.answer_cache) == 1


def test_other_conversation_collections_grants_and_index_state_miss(kb, tmp_path, monkeypatch):
    sam, op = qa.caller_for(kb, "sam", "ui"), qa.caller_for(kb, None, "cli")
    calls = Counting(kb, monkeypatch)
    base = qa.ask_blocking(kb, sam, QUESTION)
    assert calls.generated == 1

    # Another conversation before the same question: not the same question.
    history = [{"role": "user", "content": "Tell me about bonuses."}, {"role": "assistant", "content": "In March."}]
    assert qa.ask_blocking(kb, sam, QUESTION, history=history).cached_from is None
    # Another set of readable collections (the operator reads finance too), or asking for fewer of them.
    assert qa.ask_blocking(kb, op, QUESTION).cached_from is None
    hr = next(i for i in sam.collection_ids)
    only_hr = qa.ask(kb, op, QUESTION, collections={hr})
    assert [e for e in only_hr if e.kind == "done"][0].result.cached_from == base.audit_seq  # same set as sam's
    # Another k.
    assert qa.ask_blocking(kb, sam, QUESTION, k=2).cached_from is None
    generated = calls.generated

    # A grant change changes what sam reads: no answer built for the old grants.
    users.grant(kb, ADMIN, "finance", user="sam")
    sam2 = qa.caller_for(kb, "sam", "ui")
    assert qa.ask_blocking(kb, sam2, QUESTION).cached_from is None
    users.revoke(kb, ADMIN, "finance", user="sam")
    sam = qa.caller_for(kb, "sam", "ui")
    assert qa.ask_blocking(kb, sam, QUESTION).cached_from == base.audit_seq  # back to the same grants and index
    assert calls.generated == generated + 1

    # Any index change (a new document, even in another collection) ends every cached answer, on disk too.
    before = set(kb.settings.answer_cache_dir.glob("*.kbc"))
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "parking.md").write_text("# Parking\n\nStaff park in garage B; visitors use the front lot.\n")
    list(submit_paths(kb, [folder], "finance"))
    Worker(kb).run_once()
    again = qa.ask_blocking(kb, sam, QUESTION)
    assert again.cached_from is None and calls.generated == generated + 2
    assert not before & set(kb.settings.answer_cache_dir.glob("*.kbc"))
    assert qa.ask_blocking(kb, sam, QUESTION).cached_from == again.audit_seq

    # Deleting a document (the parking one, which no answer here cites) is an index change as well.
    with kb.sessions.begin() as s:
        parking = next(d.id for d in documents.list_documents(s) if d.source.endswith("parking.md"))
        documents.delete_document(s, kb.settings.blobs_dir, parking)
    assert qa.ask_blocking(kb, sam, QUESTION).cached_from is None


def test_refusals_are_cached_and_a_damaged_entry_or_settings_change_is_a_miss(kb, monkeypatch):
    sam = qa.caller_for(kb, "sam", "ui")
    off_topic = "What is the boiling point of liquid nitrogen?"
    r1 = qa.ask_blocking(kb, sam, off_topic)
    r2 = qa.ask_blocking(kb, sam, off_topic)
    assert r1.refused and r2.refused and r2.cached_from == r1.audit_seq
    assert r2.refusal_reason == r1.refusal_reason
    rec, _ = _record(kb, r2.audit_seq)
    assert rec.outcome == "refused" and rec.details["cached"] is True

    # A damaged file does not open: a miss (answered normally) and the file is removed.
    entry = next(kb.settings.answer_cache_dir.glob("*.kbc"))
    data = bytearray(entry.read_bytes())
    data[-5] ^= 0xFF
    entry.write_bytes(bytes(data))
    r3 = qa.ask_blocking(kb, sam, off_topic)
    assert r3.refused and r3.cached_from is None
    assert qa.ask_blocking(kb, sam, off_topic).cached_from == r3.audit_seq

    # Another answer setting (here the relevance gate) is another key; cache off answers every time.
    monkeypatch.setattr(kb.settings.retrieval, "min_score", kb.settings.retrieval.min_score + 0.01)
    assert qa.ask_blocking(kb, sam, off_topic).cached_from is None
    monkeypatch.setattr(kb.settings.cache, "answers", False)
    assert qa.ask_blocking(kb, sam, off_topic).cached_from is None
    assert qa.ask_blocking(kb, sam, off_topic).cached_from is None
