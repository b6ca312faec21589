"""Two real worker processes on PostgreSQL; one is killed with SIGKILL mid-batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from app.models import Chunk, Document, IndexEvent, Job
from app.services.container import Container
from app.services.setup import init
from ingest.submit import submit_paths
from ingest.worker import Worker
from tests.conftest import make_settings


def _make_corpus(folder):
    folder.mkdir()
    for i in range(24):
        body = " ".join(f"Section {i}.{j}: claims above {j * 100} yuan need a second approval from finance."
                        for j in range(30))
        (folder / f"policy-{i:02d}.txt").write_text(body)


def _chunk_counts(c: Container) -> dict[str, int]:
    with c.sessions() as s:
        rows = s.execute(select(Document.source, func.count(Chunk.id)).join(Chunk, Chunk.document_id == Document.id)
                         .group_by(Document.source)).all()
    return {src.rsplit("/", 1)[-1]: n for src, n in rows}


@pytest.mark.slow
def test_sigkill_mid_batch_leaves_every_document_indexed_once(tmp_path, pg_database):
    corpus = tmp_path / "corpus"
    _make_corpus(corpus)

    clean = Container(make_settings(tmp_path / "clean", f"sqlite:///{tmp_path / 'clean.sqlite3'}"))
    init(clean, "admin", "admin-password-1")
    list(submit_paths(clean, [corpus], "p"))
    Worker(clean).run_once()
    expected = _chunk_counts(clean)
    assert len(expected) == 24

    data = tmp_path / "pg"
    c = Container(make_settings(data, pg_database, ingest={"lease_seconds": 4, "poll_seconds": 0.3,
                                                                  "claim_batch": 4}))
    init(c, "admin", "admin-password-1")
    list(submit_paths(c, [corpus], "p"))
    env = {**os.environ, "KB_DATA_DIR": str(data), "KB_DATABASE__URL": pg_database,
           "KB_INGEST__LEASE_SECONDS": "4", "KB_INGEST__POLL_SECONDS": "0.3",
           "KB_INGEST__CLAIM_BATCH": "4"}  # small batches, so both workers hold jobs
    workers = [subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(2)]
    victim, survivor = workers
    try:
        deadline = time.time() + 180
        killed = False
        while time.time() < deadline and not killed:  # kill the victim while it holds a job
            with c.sessions() as s:
                held = s.scalar(select(func.count()).select_from(Job).where(
                    Job.state == "running", Job.lease_owner.contains(f":{victim.pid}:")))
                done = s.scalar(select(func.count()).select_from(Job).where(Job.state == "done"))
            if held and done >= 2:
                os.kill(victim.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        assert killed, "the victim never held a job"
        while time.time() < deadline:
            with c.sessions() as s:
                if s.scalar(select(func.count()).select_from(Job).where(Job.state != "done")) == 0:
                    break
            time.sleep(0.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM) if w.poll() is None else None
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
    with c.sessions() as s:
        docs = s.scalars(select(Document)).all()
        statuses = {d.status for d in docs}
        adds = s.scalars(select(IndexEvent.document_id).where(IndexEvent.op == "add")).all()
    assert statuses == {"indexed"}, [(d.source, d.status, d.reason) for d in docs if d.status != "indexed"]
    assert len(adds) == len(set(adds)) == 24  # each document written exactly once
    assert _chunk_counts(c) == expected  # and the same chunks as a clean run
