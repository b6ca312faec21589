"""Ingestion end to end with real files, the real scrubber and the real embedder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import Chunk, Document, IndexEvent, Job
from app.services import documents
from app.services.container import Container
from ingest.submit import submit_paths
from ingest.types import TERMINAL
from ingest.worker import Worker
from tests.conftest import FIXTURES

DOCS = FIXTURES / "docs"
EXPECTED = {  # file -> status a user must see
    "pypdf/encryption/r6-user-password.pdf": "needs_password",
    "unstructured/pdf/password.pdf": "needs_password",
    "unstructured/password_protected.xlsx": "needs_password",
    "unstructured/eml/fake-encrypted.eml": "needs_password",
    "unstructured/pdf/single_table.pdf": "indexed",  # an image-only scan, read with OCR
    "unstructured/eml/empty.eml": "empty",
    "unstructured/empty.xlsx": "empty",
    "corrupt.pdf": "failed",
    "unstructured/handbook-1p.docx": "indexed",
    "unstructured/stanley-cups.xlsx": "indexed",
    "pypdf/crazyones.pdf": "indexed",
    "unstructured/fake-email-attachment.msg": "indexed",
}


def _copy_fixtures(dst: Path) -> Path:
    shutil.copytree(DOCS, dst)
    good = (DOCS / "pypdf" / "crazyones.pdf").read_bytes()
    (dst / "corrupt.pdf").write_bytes(good[: len(good) // 3] + b"\x00garbage")  # truncated mid-stream
    return dst


def ingest(container, folder: Path, collection: str = "docs") -> list:
    items = list(submit_paths(container, [folder], collection))
    Worker(container).run_once()
    return items


def queue_notes(container, folder: Path, n: int, text: str = "Note {i}: the archive is locked at six.") -> list[int]:
    """Queue ``n`` small text files in the collection named after ``folder``; their document ids, oldest first."""
    folder.mkdir()
    for i in range(n):
        (folder / f"note{i}.txt").write_text(text.format(i=i))
    return sorted(x.document_id for x in submit_paths(container, [folder], folder.name))


@pytest.mark.slow
def test_real_fixture_batch_ends_in_terminal_statuses(container, tmp_path):
    folder = _copy_fixtures(tmp_path / "batch")
    submitted = ingest(container, folder)
    assert len(submitted) >= 40
    with container.sessions() as s:
        views = {v.source.split("/", 1)[1]: v for v in documents.list_documents(s)}
        assert all(v.status in TERMINAL for v in views.values()), {k: v.status for k, v in views.items()}
        for name, status in EXPECTED.items():
            assert views[name].status == status, (name, views[name].status, views[name].reason)
        assert "OCR" in views["unstructured/pdf/single_table.pdf"].reason
        assert views["corrupt.pdf"].reason
        indexed = [v for v in views.values() if v.status == "indexed"]
        assert len(indexed) >= 25
        assert all(v.n_chunks > 0 for v in indexed)
        assert s.scalar(select(func.count()).select_from(Chunk)) == sum(v.n_chunks for v in indexed)
        assert s.scalar(select(func.count()).select_from(Job).where(Job.state != "done")) == 0

    # Re-ingesting the unchanged folder adds nothing.
    again = ingest(container, folder)
    assert {x.outcome for x in again} == {"unchanged"}
    with container.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Document)) == len(submitted)

    # A changed file replaces its old version: old chunks go, new ones come, one current row.
    (folder / "unstructured" / "umlauts-utf8.md").write_text("# Neue Fassung\n\nDie Kündigungsfrist beträgt drei "
                                                             "Monate zum Quartalsende.", encoding="utf-8")
    changed = ingest(container, folder)
    assert [x.outcome for x in changed if x.outcome != "unchanged"] == ["queued"]
    with container.sessions() as s:
        rows = s.scalars(select(Document).where(Document.source.endswith("umlauts-utf8.md"))
                         .order_by(Document.version)).all()
        assert [r.version for r in rows] == [1, 2]
        assert [r.current for r in rows] == [False, True]
        assert rows[1].status == "indexed"
        assert s.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == rows[0].id)) == 0


@pytest.mark.slow
def test_pii_is_scrubbed_before_chunks_are_stored(container, tmp_path):
    folder = tmp_path / "pii"
    folder.mkdir()
    (folder / "case.txt").write_text(
        "患者张伟，身份证号110101199003071234，手机13912345678。Contact john.doe@example.com about the claim.",
        encoding="utf-8")
    ingest(container, folder)
    with container.sessions() as s:
        doc = s.scalars(select(Document)).one()
        chunk = s.scalars(select(Chunk)).one()
        text = container.vault.open_text(container.vault.data_key(s, doc.dek_id), chunk.text_sealed, "chunks",
                                         doc.id, 0)
    assert doc.pii_found >= 3
    for secret in ("13912345678", "john.doe@example.com"):
        assert secret not in text
    assert "<PHONE>" in text or "<CN_PHONE>" in text


def test_killed_worker_job_is_reclaimed_exactly_once(container, tmp_path):
    """Simulates a worker that died mid-document: its lease expires and another worker finishes the job."""
    from ingest import queue

    folder = tmp_path / "k"
    folder.mkdir()
    for i in range(3):
        (folder / f"note{i}.txt").write_text(f"Policy note {i}: travel must be approved in advance. " * 20)
    list(submit_paths(container, [folder], "k"))
    with container.sessions() as s:
        [dead] = queue.claim(s, "dead-worker", lease_seconds=-1)  # claimed, then the worker vanished
    Worker(container).run_once()
    with container.sessions() as s:
        assert {d.status for d in s.scalars(select(Document))} == {"indexed"}
        adds = s.scalars(select(IndexEvent.document_id).where(IndexEvent.op == "add")).all()
        assert sorted(adds) == sorted(set(adds))  # each document indexed exactly once
        with pytest.raises(queue.LeaseLost):  # the dead worker can no longer complete it
            queue.complete(s, dead)


def test_workers_claim_disjoint_batches_and_expired_leases_return(container, tmp_path):
    from ingest import queue

    ids = queue_notes(container, tmp_path / "q", 7, "Memo {i}: offices close early on Friday.")
    with container.sessions() as a, container.sessions() as b:
        first = queue.claim(a, "worker-a", lease_seconds=300, limit=4)
        second = queue.claim(b, "worker-b", lease_seconds=-1, limit=10)  # and then worker-b died
    assert [c.document_id for c in first] == ids[:4]  # oldest first
    assert [c.document_id for c in second] == ids[4:]  # nothing claimed twice
    assert all(c.attempts == 1 for c in first + second)
    with container.sessions() as s:
        again = queue.claim(s, "worker-c", lease_seconds=300, limit=10)
        assert [c.document_id for c in again] == ids[4:] and {c.attempts for c in again} == {2}
        assert queue.claim(s, "worker-d", lease_seconds=300, limit=10) == []


def test_a_job_completed_between_renewals_is_not_reported_lost(container, tmp_path):
    from ingest import queue

    queue_notes(container, tmp_path / "r", 2)
    with container.sessions() as s:
        mine = queue.claim(s, "worker-a", lease_seconds=300, limit=2)
        queue.complete(s, mine[0])  # written while the lease keeper still held it
        s.commit()
        assert queue.renew(s, mine, 300) == []
        done = s.get(Job, mine[0].job_id)
        assert done.state == "done" and done.lease_expires_at is None  # a finished job gets no new lease


def test_lease_keeper_holds_jobs_longer_than_a_lease(tmp_path, db_url):
    """A batch that takes longer than a lease (big files, slow model) is not taken over meanwhile."""
    import time

    from app.services.setup import init
    from ingest import queue
    from ingest.worker import LeaseKeeper
    from tests.conftest import make_settings

    c = Container(make_settings(tmp_path / "data", db_url, ingest={"lease_seconds": 1}))
    init(c, "admin", "admin-password-1")
    queue_notes(c, tmp_path / "l", 3)
    with c.sessions() as s:
        mine = queue.claim(s, "slow-worker", lease_seconds=1, limit=2)
    with LeaseKeeper(c) as keeper:
        keeper.hold(mine)
        time.sleep(2.5)  # more than two leases
        with c.sessions() as s:
            others = queue.claim(s, "other-worker", lease_seconds=60, limit=10)
        assert [o.document_id for o in others] == [3]  # only the job nobody held
        keeper.release(mine)
        time.sleep(1.3)
        with c.sessions() as s:
            taken = queue.claim(s, "other-worker", lease_seconds=60, limit=10)
            assert [t.job_id for t in taken] == [m.job_id for m in mine]  # released: they expire and move on
            assert queue.renew(s, mine, 60) == mine  # the old owner learns it lost them


def test_a_text_that_breaks_the_scrubber_or_a_failed_batch_embedding_fails_only_its_document(
        container, tmp_path, monkeypatch):
    folder = tmp_path / "b"
    folder.mkdir()
    for i in range(4):
        (folder / f"memo{i}.txt").write_text(f"Memo {i}: the canteen opens at eight. " * 5)
    (folder / "poison.txt").write_text("POISON text that the scrubber cannot handle.")
    scrubber, embedder = container.scrubber, container.embedder
    real_scrub, real_embed = scrubber.scrub_many, embedder.embed_passages

    def scrub_many(texts):
        texts = list(texts)
        if any("POISON" in t for t in texts):
            raise RuntimeError("scrubber crashed")
        return real_scrub(texts)

    calls = []

    def embed_passages(texts):
        calls.append(len(texts))
        if len(calls) == 1:
            raise RuntimeError("model hiccup")  # the whole batch's call fails once
        return real_embed(texts)

    monkeypatch.setattr(scrubber, "scrub_many", scrub_many)
    monkeypatch.setattr(embedder, "embed_passages", embed_passages)
    list(submit_paths(container, [folder], "b"))
    Worker(container).run_once()
    with container.sessions() as s:
        docs = {d.source.rsplit("/", 1)[-1]: d for d in s.scalars(select(Document))}
    assert docs["poison.txt"].status == "failed" and "scrubber crashed" in docs["poison.txt"].reason
    assert {n: d.status for n, d in docs.items() if n != "poison.txt"} == {f"memo{i}.txt": "indexed" for i in range(4)}
    assert calls[0] == sum(calls[1:]) and len(calls) == 5  # one failed batch call, then one call per document


@pytest.mark.parametrize("claim_batch", [64, 1])  # twins in one batch; twins in batches that overlap
def test_duplicates_are_caught_before_their_twin_is_written(tmp_path, claim_batch):
    from app.services.setup import init
    from tests.conftest import make_settings

    c = Container(make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'kb.sqlite3'}",
                                ingest={"claim_batch": claim_batch}))
    init(c, "admin", "admin-password-1")
    folder = tmp_path / "d"
    folder.mkdir()
    text = "Travel above 5,000 yuan needs the approval of the finance director. " * 4
    (folder / "a-policy.txt").write_text(text)
    (folder / "b-policy-copy.txt").write_text(text)  # same text, another name
    (folder / "c-other.txt").write_text("The canteen opens at eight.")
    (folder / "d-policy-again.md").write_text(text)
    list(submit_paths(c, [folder], "d"))
    Worker(c).run_once()
    with c.sessions() as s:
        docs = {d.source.rsplit("/", 1)[-1]: d for d in s.scalars(select(Document))}
    assert {n: d.status for n, d in docs.items()} == {
        "a-policy.txt": "indexed", "b-policy-copy.txt": "duplicate", "c-other.txt": "indexed",
        "d-policy-again.md": "duplicate"}
    assert "a-policy.txt" in docs["b-policy-copy.txt"].reason


def test_twins_held_by_two_workers_at_once_are_indexed_once(container, tmp_path):
    """Each worker's early check passes while neither twin is written; the write-time check catches it."""
    from ingest import queue
    from ingest.pipeline import StageTimes, embed_batch, prepare_batch, write_batch

    folder = tmp_path / "t"
    folder.mkdir()
    text = "Branch vaults are audited every quarter by two officers from another branch. " * 3
    (folder / "a-vault.txt").write_text(text)
    (folder / "b-vault-copy.txt").write_text(text)
    list(submit_paths(container, [folder], "t"))
    times = StageTimes()
    batches = []
    for worker in ("worker-a", "worker-b"):
        with container.sessions() as s:
            claims = queue.claim(s, worker, lease_seconds=300, limit=1)
        batches.append(prepare_batch(container, claims, times, {}))  # each worker has its own in-flight set
    assert all(len(b.ready) == 1 for b in batches)  # both passed the check at load time
    for b in reversed(batches):  # b is written first
        write_batch(container, b, embed_batch(container, b, times), times)
    with container.sessions() as s:
        docs = {d.source.rsplit("/", 1)[-1]: d for d in s.scalars(select(Document))}
        n_chunks = s.scalar(select(func.count()).select_from(Chunk))
        open_jobs = s.scalar(select(func.count()).select_from(Job).where(Job.state != "done"))
    assert docs["b-vault-copy.txt"].status == "indexed"
    assert docs["a-vault.txt"].status == "duplicate" and "b-vault-copy.txt" in docs["a-vault.txt"].reason
    assert n_chunks == docs["b-vault-copy.txt"].n_chunks and open_jobs == 0
