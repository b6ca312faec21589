"""Four processes append to the log at the same moment: the chain stays one line, with no gaps or forks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from app import audit
from app.services import auditing
from app.services.caller import Caller

WRITERS = 4
PER_WRITER = 40

# Each writer builds the real Container from KB_ settings, signals it is ready, waits for the
# starting gun, then appends one record per transaction. SQLite's write lock is not fair: a writer
# that commits and at once begins again can keep it while the others sleep in their busy handlers,
# so the writers run one after another and the race never happens. A short random pause between
# transactions (outside them) lets the others in, as real request handlers would.
WRITER = """
import random, sys, time
from pathlib import Path
from sqlalchemy import text
from app import audit
from app.services.container import Container
from app.settings import Settings

name, n, gate = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
c = Container(Settings())
with c.sessions() as s:
    s.execute(text("SELECT 1"))
c.vault  # load the key ring before the race
(gate / f"ready-{name}").touch()
while not (gate / "go").exists():
    time.sleep(0.002)
for i in range(n):
    with c.sessions.begin() as s:
        audit.append(s, c.vault, kind="query", action="ask", actor=audit.Actor(name, "staff", "api"),
                     details={"i": i}, sealed={"question": f"{name} question {i}", "answer": "ok"})
    time.sleep(random.uniform(0.001, 0.01))
"""


def test_concurrent_writers_make_one_linear_chain(container, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, "KB_DATA_DIR": str(container.settings.data_dir),
           "KB_DATABASE__URL": container.settings.database_url}
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{i}", str(PER_WRITER), str(gate)], env=env,
                              cwd=root, stderr=subprocess.PIPE, text=True) for i in range(WRITERS)]
    deadline = time.monotonic() + 60
    while len(list(gate.glob("ready-*"))) < WRITERS:
        assert time.monotonic() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs if p.poll() is not None]
        time.sleep(0.01)
    (gate / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    with container.sessions() as s:
        report = audit.verify_checked(s, container.vault)
        records = sorted(auditing.iter_views(container, s, Caller("carol", "auditor", "cli"), kind="query"),
                         key=lambda v: v.seq)
    assert report.ok, report
    assert report.checked == WRITERS * PER_WRITER + 1 and report.first_seq == 1  # + init's record
    assert report.last_seq == report.checked  # seq 1..N without gaps
    assert report.checkpoint_seq == report.last_seq  # the writers' checkpoints never went backwards
    by_writer: dict[str, list[int]] = {}
    for v in records:
        by_writer.setdefault(v.actor, []).append(v.details["i"])
        assert v.question == f"{v.actor} question {v.details['i']}"
    assert by_writer == {f"w{i}": list(range(PER_WRITER)) for i in range(WRITERS)}  # each in its own order
    switches = sum(a.actor != b.actor for a, b in zip(records, records[1:], strict=False))
    assert switches > WRITERS - 1, "the writers never ran at the same time, so this proved nothing"
