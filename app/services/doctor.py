"""kb doctor: check an installation and say what to fix.

Each check gives ok, warn (worth knowing; kb works) or fail (something needs fixing: `kb doctor` exits
non-zero), a one-line finding and, when not ok, the command or step that fixes it. A check that needs
something an earlier check found broken is skipped. Read-only: nothing is written, not even an audit
record, so monitoring may run `kb doctor --json` every minute without filling the log.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app import audit, migrate
from app.errors import KbError
from app.keys import KeyRing, fingerprint
from app.models import Chunk, Document, KeyVersion
from app.services.caller import Principal, require_role

CHROMIUM = Path("/usr/bin/chromium")  # what the browser tests drive (tests/e2e/conftest.py)
DISK_FAIL_BYTES = 1 << 30  # under 1 GiB free: ingestion and snapshots will fail soon
DISK_WARN_SHARE = 0.10
SOURCE_TREE = Path(__file__).resolve().parents[2]


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str | None = None
    seconds: float = 0.0


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def developing() -> bool:
    """A source checkout with its tests (where `make test` runs the browser tests), not an installed kb."""
    return (SOURCE_TREE / "tests" / "e2e").is_dir() and importlib.util.find_spec("playwright") is not None


def diagnose(container, who: Principal, *, verify_models: bool = True, dev: bool | None = None) -> Report:
    require_role(who, "admin")
    report = Report()
    state: dict[str, Any] = {}

    def run(name: str, fn: Callable[[], Check | None], needs: tuple[str, ...] = ()) -> None:
        missing = [n for n in needs if not state.get(n)]
        if missing:
            report.checks.append(Check(name, "skip", f"needs a working {' and '.join(missing)}"))
            return
        t0 = time.perf_counter()
        try:
            check = fn()
        except KbError as exc:
            check = Check(name, "fail", str(exc))
        except Exception as exc:  # a doctor must report, not crash
            check = Check(name, "fail", f"{type(exc).__name__}: {exc}")
        if check is None:
            return
        check.name, check.seconds = name, round(time.perf_counter() - t0, 3)
        state[name] = check.status in ("ok", "warn")
        report.checks.append(check)

    s = container.settings
    run("data dir", lambda: _data_dir(s.data_dir))
    run("database", lambda: _database(container))
    run("master key", lambda: _master_key(container), needs=("database",))
    run("disk space", lambda: _disk(s.data_dir))
    run("audit chain", lambda: _audit(container), needs=("database", "master key"))
    run("blobs", lambda: _blobs(container), needs=("database",))
    run("index", lambda: _index(container), needs=("database", "master key"))
    run("embedder", lambda: _embedder(container))
    run("models", lambda: _models(container, verify_models))
    if developing() if dev is None else dev:
        run("chromium", _chromium)
    return report


# --- the checks ----------------------------------------------------------------------------------
def _data_dir(path: Path) -> Check:
    if not path.is_dir():
        return Check("", "fail", f"{path} does not exist", "Run `kb init` (or set KB_DATA_DIR to the data dir).")
    if not os.access(path, os.W_OK):
        return Check("", "fail", f"{path} is not writable by this account",
                     "Give this account the data dir (chown), or set KB_DATA_DIR.")
    mode = _mode(path)
    if mode & 0o077:
        return Check("", "warn", f"{path.resolve()} is mode {mode:04o}: other accounts may list it",
                     f"chmod 700 {path.resolve()}")
    return Check("", "ok", f"{path.resolve()} (mode {mode:04o})")


def _database(container) -> Check:
    s = container.settings
    if not s.database.url and not (s.data_dir / "kb.sqlite3").exists():  # do not create it by connecting
        return Check("", "fail", f"no database at {s.data_dir / 'kb.sqlite3'}",
                     "Run `kb init` (or set KB_DATABASE_URL).")
    engine = container.engine  # ConfigError: says the database cannot be reached and why
    where = engine.url.render_as_string(hide_password=True)
    current, head = migrate.current_revision(engine), migrate.head_revision(engine)
    if current is None:
        return Check("", "fail", f"{where} is reachable but empty", "Run `kb init`.")
    if current != head:
        if migrate.known_revision(current):
            return Check("", "fail", f"{where} is at schema {current}, this kb's head is {head}", "Run `kb migrate`.")
        return Check("", "fail", f"{where} is at schema {current}, which this kb does not know (newer kb?)",
                     "Run the kb version that migrated it, or a newer one.")
    return Check("", "ok", f"{where}, schema {current} (head)")


def _master_key(container) -> Check:
    s = container.settings
    warn = None
    if s.crypto.master_key is not None:
        ring = KeyRing.from_env_key(s.crypto.master_key.get_secret_value())
        where = "KB_MASTER_KEY"
    else:
        path = container.key_file
        if not path.exists():
            return Check("", "fail", f"no key file at {path}",
                         "Restore the key file from your backup (`kb restore`) or set KB_MASTER_KEY_FILE; `kb init` "
                         "makes a new key only for a new installation.")
        mode = _mode(path)
        if mode & 0o077:
            return Check("", "fail", f"{path} is mode {mode:04o}: other accounts can read the master key",
                         f"chmod 600 {path}")
        if path.parent == s.keys_dir and _mode(path.parent) & 0o077:
            warn = f"{path.parent} is mode {_mode(path.parent):04o}; chmod 700 {path.parent}"
        ring = KeyRing.load(path)
        where = f"{path} (mode {mode:04o})"
    with container.sessions() as session:
        recorded = {v.version: v.fingerprint for v in session.scalars(select(KeyVersion))}
    lacking = sorted(set(recorded) - set(ring.versions))
    if lacking:
        return Check("", "fail", f"the database uses master key version(s) {lacking}, which {where} lacks",
                     "Restore the key file that holds them (from the backup made with this database).")
    wrong = sorted(v for v, fp in recorded.items() if fingerprint(ring.versions[v]) != fp)
    if wrong:
        return Check("", "fail", f"{where} is not this database's key (version(s) {wrong} differ)",
                     "Point KB_MASTER_KEY_FILE at this database's key file.")
    detail = f"{where}, versions {sorted(ring.versions)}, current {ring.current}"
    if warn:
        return Check("", "warn", detail, warn)
    return Check("", "ok", detail)


def _disk(path: Path) -> Check:
    where = path if path.exists() else path.parent
    usage = shutil.disk_usage(where)
    free_gb = usage.free / 1e9
    share = usage.free / usage.total if usage.total else 0.0
    detail = f"{free_gb:.1f} GB free of {usage.total / 1e9:.1f} GB ({share:.0%}) at {where.resolve()}"
    if usage.free < DISK_FAIL_BYTES:
        return Check("", "fail", detail, "Free space or grow the volume: ingestion and index snapshots need room.")
    if share < DISK_WARN_SHARE:
        return Check("", "warn", detail, "Plan more space: under 10% free.")
    return Check("", "ok", detail)


def _audit(container) -> Check:
    with container.sessions() as session:
        r = audit.verify_checked(session, container.vault)
    if not r.ok:
        return Check("", "fail", f"broken at seq {r.first_bad_seq}: {r.problem}",
                     "Run `kb audit verify` for the details; compare with your latest backup.")
    return Check("", "ok", f"{r.checked} records intact ({r.records_per_s:.0f}/s)")


def _blobs(container) -> Check:
    blobs_dir = container.settings.blobs_dir
    with container.sessions() as session:
        names = session.scalars(select(Document.blob_name).where(Document.blob_name.is_not(None))).all()
    missing = [n for n in names if not (blobs_dir / n[:2] / n).is_file()]
    if missing:
        return Check("", "fail", f"{len(missing)} of {len(names)} original file(s) missing under {blobs_dir}",
                     "Restore blobs/ from the latest backup; re-indexing those documents fails until then.")
    return Check("", "ok", f"{len(names)} original file(s) present")


def _index(container) -> Check:
    from app.services.search import SearchIndex

    index = SearchIndex(container)
    info = index.snapshot_info()
    with container.sessions() as session:
        db_ids = set(session.scalars(select(Chunk.id)))
    chunks = count = len(db_ids)
    if info is None:
        if not count:
            return Check("", "ok", "no chunks yet, no snapshot yet")
        return Check("", "warn", f"no index snapshot for {count} chunks: the first search builds it",
                     "Run `kb index rebuild` now, so the first question does not wait.")
    if not index.load_snapshot():
        return Check("", "fail", "the index snapshot is unreadable or was built with other settings",
                     "Run `kb index rebuild`.")
    lag = index.refresh()
    ids = index.chunk_ids()
    if ids != db_ids:
        return Check("", "fail", f"the index holds {len(ids)} chunks, the chunks table {chunks} "
                     f"({len(db_ids - ids)} missing, {len(ids - db_ids)} stale)", "Run `kb index rebuild`.")
    return Check("", "ok", f"{chunks} chunks in step (snapshot {lag} event(s) behind the database)")


def _embedder(container) -> Check:
    from retrieval.embedder import resolve_model_dir

    name = container.settings.retrieval.embedder_model
    folder = resolve_model_dir(name)  # ConfigError says what to install
    return Check("", "ok", f"{name} at {folder}")


def _models(container, verify: bool) -> Check:
    llm = container.settings.llm
    if llm.backend == "openai":
        return Check("", "ok", f"remote generator at {llm.openai_base_url} (not contacted)")
    from llm import models

    try:
        path = llm.model_path or models.default_model_path(container.settings.models_dir, llm.model)
    except KbError as exc:
        return Check("", "fail", str(exc), "Run `kb models pull` (or `kb models pull --small`).")
    if not path.is_file():
        return Check("", "fail", f"model file {path} is missing", "Run `kb models pull`.")
    expected = llm.model_sha256 or models.recorded_sha256(path)
    if expected is None:
        return Check("", "warn", f"{path.name} has no recorded sha256, so it cannot be verified",
                     "Register it (`kb models pull`, or set llm.model_sha256).")
    if not verify:
        return Check("", "ok", f"{path.name} present ({path.stat().st_size / 1e9:.2f} GB; sha256 not checked)")
    models.verify(path, expected)  # ModelIntegrityError names the fix
    return Check("", "ok", f"{path.name} verified ({path.stat().st_size / 1e9:.2f} GB, sha256 {expected[:12]}…)")


def _chromium() -> Check:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return Check("", "ok", f"{CHROMIUM} (browser tests)")
    return Check("", "warn", f"no {CHROMIUM}: the browser tests cannot run",
                 "apt-get install chromium fonts-wqy-microhei")
