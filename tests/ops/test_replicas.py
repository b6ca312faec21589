"""Replicas on one PostgreSQL and one data dir behave as one system: a document ingested by one process
(`kb ingest --wait`) is served by long-running others without a restart, snapshots written by two
replicas at once never give a third a damaged or mixed index, and `kb worker`s drain one queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import Chunk, Document, Job
from app.services.container import Container
from app.services.search import SearchIndex
from tests.conftest import PG_URL
from tests.ops.conftest import settings_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres,
              pytest.mark.skipif(not PG_URL, reason="KB_TEST_DATABASE_URL is not set")]
ROOT = Path(__file__).resolve().parents[2]


class Replica:
    def __init__(self, env: dict[str, str]) -> None:
        self.p = subprocess.Popen([sys.executable, "-m", "tests.ops.replica"], cwd=ROOT, env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def read(self):
        line = self.p.stdout.readline()
        assert line, f"replica exited with {self.p.poll()}"
        return json.loads(line)

    def ask(self, line: str):
        self.send(line)
        return self.read()

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=30)


def _kb(env, *args, timeout=600) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def _folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for n, body in files.items():
        (folder / n).write_text(body)
    return folder


def test_replicas_on_one_postgres_and_one_data_dir(tmp_path, pg_database):
    from app.services.setup import init

    data = tmp_path / "shared-data"
    c = Container(settings_for(data, pg_database))
    init(c, "admin", "admin-password-1")
    env = {**os.environ, "KB_DATA_DIR": str(data), "KB_DATABASE_URL": pg_database, "KB_PII__ENABLED": "false"}
    a, b = Replica(env), Replica(env)
    try:
        assert a.ask("count") == 0 and b.ask("count") == 0  # both running, with an empty index

        # a document ingested by a third process is served by both, without a restart
        _kb(env, "ingest", str(_folder(tmp_path, "one", {"firewall.txt": "Firewall rules are reviewed by the "
                                                         "security officer every month."})), "--wait")
        assert a.ask("search who reviews firewall rules")[0].endswith("firewall.txt")
        assert b.ask("search firewall review")[0].endswith("firewall.txt")
        _kb(env, "ingest", str(_folder(tmp_path, "two", {"leave.txt": "Employees accrue twenty-five days of paid "
                                                         "leave each year."})), "--wait")
        assert b.ask("search paid leave days")[0].endswith("leave.txt")
        assert a.ask("search how many days of paid leave")[0].endswith("leave.txt")

        # two replicas write snapshots at once; every snapshot a third process loads is whole and current
        with c.sessions() as s:
            db_ids = set(s.scalars(select(Chunk.id)))
        a.send("snap 25")
        b.send("snap 25")
        loads = 0
        deadline = time.monotonic() + 300
        while a.p.stdout.readable() and time.monotonic() < deadline:
            fresh = SearchIndex(c)
            assert fresh.load_snapshot(), "a snapshot failed to load while two replicas wrote"
            fresh.refresh()  # a snapshot may be older than the database; its watermark brings it up to date
            assert fresh.chunk_ids() == db_ids
            loads += 1
            if loads >= 40:
                break
        assert a.read() == "ok" and b.read() == "ok"
        assert loads >= 10
        fresh = SearchIndex(c)
        assert fresh.load_snapshot() and fresh.chunk_ids() == db_ids  # the replicas' last snapshots are current
        assert [h.chunk_id for h in fresh.search("firewall review", 2, None)] == \
            [h.chunk_id for h in SearchIndex(c).search("firewall review", 2, None)]
        gens = [p for p in (data / "index").iterdir() if p.name.startswith("g-")]
        assert len(gens) >= 2  # generations stay until they are old; none was overwritten
        assert not [p for p in (data / "index").iterdir() if p.name.endswith(".tmp")]
    finally:
        a.close()
        b.close()

    # several `kb worker`s drain one queue
    notes = {f"note{i}.txt": f"Note {i}: the archive room {i} is locked at {i} o'clock." for i in range(8)}
    _kb(env, "ingest", str(_folder(tmp_path, "notes", notes)), "-c", "notes")
    wenv = {**env, "KB_INGEST__CLAIM_BATCH": "1", "KB_INGEST__POLL_SECONDS": "0.2", "KB_INGEST__WORKER_NICE": "0"}
    workers = [subprocess.Popen([sys.executable, "-m", "app", "worker"], env=wenv, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            with c.sessions() as s:
                left = s.scalar(select(func.count()).select_from(Job).where(Job.state != "done"))
            if not left:
                break
            time.sleep(1)
        assert not left, "the workers did not drain the queue"
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
    with c.sessions() as s:
        owners = set(s.scalars(select(Job.lease_owner).join(Document, Document.id == Job.document_id)
                               .where(Document.source.like("%note%"))))
        statuses = set(s.scalars(select(Document.status).where(Document.source.like("%note%"))))
    assert statuses == {"indexed"}
    assert len(owners) == 2, owners  # both workers took jobs from the one queue
    c.engine.dispose()
