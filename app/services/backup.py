"""kb backup and kb restore: one consistent, encrypted snapshot of an installation, and its way back.

A backup is a folder:

    manifest.json             format, schema revision, counts, audit head, scrypt parameters, every
                              other file with its size and sha256, and an HMAC over all of it
    keys.kbf                  the master key ring and the backup's data key, sealed (AES-256-GCM) under
                              a key derived from the passphrase (scrypt)
    database.sqlite3.kbf      the database, sealed under the backup's data key: SQLite's online backup
      or database.pgdump.kbf  API, or pg_dump (custom format) in the same snapshot the blob list is read in
    models-manifest.json.kbf  the model manifest (which files, their sha256 and provenance), sealed
    blobs/xx/<name>           the original uploads, copied as they are on disk: sealed by their documents'
                              data keys, which the database holds wrapped by the master key ring

Nothing in it is plaintext except manifest.json (names, sizes, digests, counts). The index snapshots
are not backed up: they are derived, and restore rebuilds them from the chunks table.

Restore goes into an empty data dir and an empty database only. It checks the passphrase, the
manifest's HMAC and every file's sha256 before it writes anything; it builds the new installation in a
staging folder inside the data dir and moves it into place at the end, and on any failure removes what
it wrote (and, on PostgreSQL, drops what pg_restore created). Then it migrates the schema to head,
verifies the audit chain against the head the backup recorded, and rebuilds the indexes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from app import audit, crypto, migrate
from app.db import make_engine
from app.errors import ConfigError, IntegrityError, KbError
from app.keys import KEY_FILE_FORMAT, KeyRing
from app.services.caller import Principal, actor, require_role

FORMAT = "kb-backup-1"
MANIFEST = "manifest.json"
KEYS_FILE = "keys.kbf"
MODELS_FILE = "models-manifest.json.kbf"
DB_FILES = {"sqlite": "database.sqlite3.kbf", "postgresql": "database.pgdump.kbf"}
MIN_PASSPHRASE = 12
# scrypt cost: 2**15 x 8 x 128 B = 32 MiB of memory and ~0.1 s per guess on a server core.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_COPY = 1 << 20
# What an "empty" data dir may hold: the folders `kb init` or a volume mount leave, all empty.
_EMPTY_DIRS = {"blobs", "index", "models", "keys", "lost+found"}

# progress(label, total_bytes) -> advance(n_bytes); the CLI draws a bar per stage.
Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


@dataclass
class BackupResult:
    dest: str
    backup_id: str
    database: str  # dialect
    schema: str | None
    files: int
    bytes: int
    seconds: float
    documents: int
    chunks: int
    audit_records: int
    blobs: int
    missing_blobs: list[str] = field(default_factory=list)  # uploaded and deleted again while backing up


@dataclass
class RestoreResult:
    data_dir: str
    database: str
    backup_id: str
    backup_created_at: str
    schema_from: str | None
    schema_to: str | None
    documents: int
    chunks: int
    blobs: int
    audit_ok: bool
    audit_checked: int
    audit_problem: str | None
    indexed_chunks: int | None
    seconds: float
    notes: list[str] = field(default_factory=list)


# --- keys and the manifest -----------------------------------------------------------------------
def _derive(passphrase: str, kdf: dict[str, Any]) -> tuple[bytes, bytes]:
    """(wrap key, manifest HMAC key) from the passphrase: scrypt, then HKDF to split it."""
    if kdf.get("name") != "scrypt":
        raise KbError(f"The backup uses an unknown key derivation {kdf.get('name')!r}; restore it with a newer kb.")
    master = Scrypt(salt=bytes.fromhex(kdf["salt"]), length=32, n=int(kdf["n"]), r=int(kdf["r"]),
                    p=int(kdf["p"])).derive(passphrase.encode())

    def sub(info: str) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(master)

    return sub("kb-backup/wrap"), sub("kb-backup/manifest")


def _manifest_mac(mac_key: bytes, manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "hmac"}
    return hmac.new(mac_key, json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
                    hashlib.sha256).hexdigest()


def _ring_json(ring: KeyRing) -> dict[str, Any]:
    return {"format": KEY_FILE_FORMAT, "versions": {str(v): k.hex() for v, k in sorted(ring.versions.items())},
            "hmac_key": ring.hmac_key.hex()}


def _ring_from(data: dict[str, Any], path: Path | None) -> KeyRing:
    return KeyRing({int(v): bytes.fromhex(k) for v, k in data["versions"].items()}, bytes.fromhex(data["hmac_key"]),
                   path)


def _same_ring(a: KeyRing, b: KeyRing) -> bool:
    return a.versions == b.versions and a.hmac_key == b.hmac_key


class _HashingWriter:
    """A file that also hashes and counts what is written to it."""

    def __init__(self, f: IO[bytes], advance: Callable[[int], None] | None = None) -> None:
        self.f, self.h, self.n, self.advance = f, hashlib.sha256(), 0, advance

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.h.update(data)
        self.n += len(data)
        if self.advance:
            self.advance(len(data))
        return len(data)


def _create(path: Path) -> IO[bytes]:
    """A new file only this account may read."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _seal_to(cipher: crypto.Aead, key: bytes, src: IO[bytes] | Iterable[bytes], dst: Path, aad: bytes) -> dict:
    with _create(dst) as f:
        w = _HashingWriter(f)
        crypto.seal_stream(cipher, key, src, w, aad)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    return {"size": w.n, "sha256": w.h.hexdigest()}


def _copy_hashed(src: Path, dst: Path, advance: Callable[[int], None]) -> dict:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, _create(dst) as fout:
        w = _HashingWriter(fout, advance)
        while chunk := fin.read(_COPY):
            w.write(chunk)
    return {"size": w.n, "sha256": w.h.hexdigest()}


def _sha256(path: Path, advance: Callable[[int], None]) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_COPY):
            h.update(chunk)
            n += len(chunk)
            advance(len(chunk))
    return n, h.hexdigest()


def _aad(backup_id: str, name: str) -> bytes:
    return crypto.aad_of("kb-backup", backup_id, name)


# --- the database snapshot -----------------------------------------------------------------------
@dataclass
class _Snapshot:
    file: dict
    revision: str | None
    blob_names: set[str]
    counts: dict[str, int]
    audit_head: list | None


_FACTS = {
    "documents": "SELECT count(*) FROM documents",
    "chunks": "SELECT count(*) FROM chunks",
    "audit_records": "SELECT count(*) FROM audit_log",
    "users": "SELECT count(*) FROM users",
}


def _facts(execute: Callable[[str], list[tuple]]) -> tuple[str | None, set[str], dict[str, int], list | None]:
    """Revision, referenced blob names, counts and audit head, read in the snapshot being dumped."""
    rev = execute("SELECT version_num FROM alembic_version")
    blobs = {r[0] for r in execute("SELECT blob_name FROM documents WHERE blob_name IS NOT NULL")}
    counts = {k: int(execute(q)[0][0]) for k, q in _FACTS.items()}
    head = execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    return (rev[0][0] if rev else None), blobs, counts, ([int(head[0][0]), head[0][1]] if head else None)


def _snapshot_sqlite(engine: Engine, work: Path, cipher, key: bytes, dst: Path, aad: bytes) -> _Snapshot:
    live = engine.url.database
    if not live or live == ":memory:":
        raise ConfigError("kb backup needs a database file; this SQLite database lives in memory.")
    copy = work / "db.sqlite3"
    src = sqlite3.connect(f"file:{quote(str(Path(live).resolve()))}?mode=ro", uri=True, timeout=30)
    dst_conn = sqlite3.connect(copy)
    try:
        src.backup(dst_conn)  # one step: one read transaction, so one consistent state (writers go on, WAL)
    finally:
        src.close()
    try:
        facts = _facts(lambda q: dst_conn.execute(q).fetchall())
    finally:
        dst_conn.close()
    with open(copy, "rb") as f:
        info = _seal_to(cipher, key, f, dst, aad)
    copy.unlink()
    return _Snapshot(info, *facts)


def _libpq(engine: Engine) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment that carries it."""
    url = engine.url.set(drivername="postgresql")
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
        url = url.set(password=None)
    return url.render_as_string(hide_password=False), env


def _pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError(f"{name} was not found on PATH. Install the PostgreSQL client tools (Debian: apt-get "
                          f"install postgresql-client, the server's major version or newer) and run this again.")
    return path


def _snapshot_pg(engine: Engine, work: Path, cipher, key: bytes, dst: Path, aad: bytes) -> _Snapshot:
    pg_dump = _pg_tool("pg_dump")
    uri, env = _libpq(engine)
    with engine.connect() as conn:
        # One exported snapshot: pg_dump dumps exactly the state in which the blob list and counts are read.
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        snap = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        facts = _facts(lambda q: [tuple(r) for r in conn.execute(text(q)).all()])
        with tempfile.TemporaryFile(dir=work) as err:
            proc = subprocess.Popen([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                                     f"--snapshot={snap}", f"--dbname={uri}"],
                                    stdout=subprocess.PIPE, stderr=err, env=env)
            assert proc.stdout is not None
            try:
                info = _seal_to(cipher, key, proc.stdout, dst, aad)
            finally:
                proc.stdout.close()
                rc = proc.wait()
            if rc != 0:
                err.seek(0)
                msg = err.read().decode(errors="replace").strip().splitlines()
                raise KbError(f"pg_dump failed (exit {rc}): {msg[-1] if msg else 'no message'}")
        conn.rollback()
    return _Snapshot(info, *facts)


# --- backup --------------------------------------------------------------------------------------
def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _blob_files(blobs_dir: Path) -> dict[str, Path]:
    if not blobs_dir.is_dir():
        return {}
    return {p.name: p for p in blobs_dir.glob("*/*") if p.is_file() and not p.name.endswith(".tmp")}


def backup(container, who: Principal, dest: Path, passphrase: str, progress: Progress | None = None) -> BackupResult:
    """Write one consistent, encrypted backup of this installation to the folder ``dest`` (new or empty).

    Safe while kb serves: the database is read in one snapshot, blobs are copied as sealed files (ones
    uploaded during the copy are picked up, ones deleted with their document are left out)."""
    require_role(who, "admin")
    progress = progress or _no_progress
    t0 = time.perf_counter()
    s = container.settings
    if len(passphrase) < MIN_PASSPHRASE:
        raise KbError(f"The backup passphrase must have at least {MIN_PASSPHRASE} characters: it is all that "
                      "protects the master key in the backup.")
    dest = Path(dest)
    if _inside(dest, s.data_dir):
        raise KbError(f"{dest} is inside the data dir {s.data_dir}: a backup there is lost with it. "
                      "Write it to another disk.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise KbError(f"{dest} already exists and is not an empty folder. Give a new folder for each backup.")
    dialect = container.engine.dialect.name
    if dialect not in DB_FILES:
        raise ConfigError(f"kb backup supports SQLite and PostgreSQL, not {dialect}.")
    ring = container.vault.ring
    dest_created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    work = Path(tempfile.mkdtemp(dir=s.data_dir, prefix=".backup-"))  # 0700, beside the live database
    backup_id = os.urandom(8).hex()
    cipher = crypto.get_cipher("aes-256-gcm")
    data_key = os.urandom(32)
    files: dict[str, dict] = {}
    try:
        # 1. every blob present now (sealed files: copied as they are)
        present = _blob_files(s.blobs_dir)
        advance = progress("blobs", sum(p.stat().st_size for p in present.values()))
        copied: dict[str, dict] = {}
        for name, path in present.items():
            try:
                copied[name] = _copy_hashed(path, dest / "blobs" / name[:2] / name, advance)
            except FileNotFoundError:  # deleted meanwhile
                continue
        # 2. the database, in one snapshot
        advance = progress("database", 1)
        db_name = DB_FILES[dialect]
        snapshot = (_snapshot_sqlite if dialect == "sqlite" else _snapshot_pg)(
            container.engine, work, cipher, data_key, dest / db_name, _aad(backup_id, db_name))
        advance(1)
        files[db_name] = snapshot.file
        # 3. the blobs that snapshot references: pick up late uploads, drop ones deleted before it
        missing = []
        for name in sorted(snapshot.blob_names - copied.keys()):
            src = s.blobs_dir / name[:2] / name
            try:
                copied[name] = _copy_hashed(src, dest / "blobs" / name[:2] / name, lambda _n: None)
            except FileNotFoundError:
                missing.append(name)
        for name in sorted(copied.keys() - snapshot.blob_names):
            (dest / "blobs" / name[:2] / name).unlink()
            del copied[name]
        files.update({f"blobs/{n[:2]}/{n}": v for n, v in sorted(copied.items())})
        # 4. the model manifest
        models_manifest = s.models_dir / "manifest.json"
        if models_manifest.is_file():
            files[MODELS_FILE] = _seal_to(cipher, data_key, [models_manifest.read_bytes()], dest / MODELS_FILE,
                                          _aad(backup_id, MODELS_FILE))
        # 5. the key ring and the data key, under the passphrase
        kdf = {"name": "scrypt", "salt": os.urandom(16).hex(), "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
        wrap_key, mac_key = _derive(passphrase, kdf)
        keys_body = json.dumps({"ring": _ring_json(ring), "data_key": data_key.hex()}).encode()
        files[KEYS_FILE] = _seal_to(cipher, wrap_key, [keys_body], dest / KEYS_FILE, _aad(backup_id, KEYS_FILE))
        # 6. the manifest, last: a folder without it is an unfinished backup
        manifest = {
            "format": FORMAT, "backup_id": backup_id, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "kb_version": _kb_version(), "database": {"dialect": dialect, "file": db_name,
                                                      "revision": snapshot.revision},
            "counts": {**snapshot.counts, "blobs": len(copied)}, "audit_head": snapshot.audit_head,
            "missing_blobs": missing, "kdf": kdf, "cipher": cipher.name,
            "files": [{"path": p, **v} for p, v in sorted(files.items())],
        }
        manifest["hmac"] = _manifest_mac(mac_key, manifest)
        tmp = dest / f".{MANIFEST}.tmp"
        with _create(tmp) as f:
            f.write(json.dumps(manifest, indent=1).encode())
        os.replace(tmp, dest / MANIFEST)
    except BaseException:
        _remove_contents(dest, remove_self=dest_created)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(v["size"] for v in files.values())
    with container.sessions.begin() as session:
        audit.append(session, container.vault, kind="admin", action="backup.create", actor=actor(who),
                     target=str(dest.resolve())[:255],
                     details={"backup_id": backup_id, "files": len(files) + 1, "bytes": total,
                              "schema": snapshot.revision, "audit_head": snapshot.audit_head})
    return BackupResult(str(dest.resolve()), backup_id, dialect, snapshot.revision, len(files) + 1,
                        total + (dest / MANIFEST).stat().st_size, round(time.perf_counter() - t0, 2),
                        snapshot.counts["documents"], snapshot.counts["chunks"], snapshot.counts["audit_records"],
                        len(copied), missing)


def _kb_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kb")
    except PackageNotFoundError:
        return "unknown"


def _remove_contents(folder: Path, remove_self: bool) -> None:
    if remove_self:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for p in folder.iterdir():
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


# --- restore: checks before anything is written --------------------------------------------------
def read_manifest(src: Path) -> dict[str, Any]:
    path = Path(src) / MANIFEST
    if not path.is_file():
        raise KbError(f"{src} is not a kb backup, or an unfinished one: it has no {MANIFEST}.")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise IntegrityError(f"{path} is damaged (not JSON). Use another copy of this backup.") from None
    if manifest.get("format") != FORMAT:
        raise KbError(f"{src} is a backup in format {manifest.get('format')!r}; this kb reads {FORMAT}.")
    return manifest


def _safe_rel(rel: str) -> str:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not rel:
        raise IntegrityError(f"The backup manifest names an unsafe path {rel!r}; refusing it.")
    return rel


def open_backup(src: Path, passphrase: str, progress: Progress | None = None) -> tuple[dict, KeyRing, bytes]:
    """Check a backup completely (passphrase, manifest HMAC, every file's size and sha256) without
    writing anything. Returns (manifest, key ring, data key)."""
    progress = progress or _no_progress
    src = Path(src)
    manifest = read_manifest(src)
    entries = {_safe_rel(f["path"]): f for f in manifest.get("files", [])}
    keys = entries.get(KEYS_FILE)
    if keys is None or not (src / KEYS_FILE).is_file():
        raise IntegrityError(f"The backup has no {KEYS_FILE}; it cannot be opened. Use another copy.")
    raw = (src / KEYS_FILE).read_bytes()
    if hashlib.sha256(raw).hexdigest() != keys["sha256"]:
        raise IntegrityError(f"{src / KEYS_FILE} does not match its sha256 in the manifest: the file is damaged. "
                             "Use another copy of this backup.")
    wrap_key, mac_key = _derive(passphrase, manifest["kdf"])
    try:
        from io import BytesIO

        body = json.loads(b"".join(crypto.open_stream(wrap_key, BytesIO(raw),
                                                      _aad(manifest["backup_id"], KEYS_FILE))))
    except IntegrityError:
        raise KbError("Wrong passphrase: it does not open this backup's keys. Nothing was restored.") from None
    if not hmac.compare_digest(_manifest_mac(mac_key, manifest), str(manifest.get("hmac", ""))):
        raise IntegrityError(f"{src / MANIFEST} was altered after the backup was made (its HMAC does not match). "
                             "Use another copy of this backup.")
    total = sum(int(f["size"]) for f in entries.values())
    advance = progress("verifying", total)
    for rel, f in entries.items():
        path = src / rel
        if not path.is_file():
            raise IntegrityError(f"The backup is incomplete: {rel} is missing. Use another copy of this backup.")
        size, digest = _sha256(path, advance)
        if size != int(f["size"]) or digest != f["sha256"]:
            raise IntegrityError(f"{rel} in the backup does not match its sha256 in the manifest: the file is "
                                 "damaged. Nothing was restored; use another copy of this backup.")
    return manifest, _ring_from(body["ring"], None), bytes.fromhex(body["data_key"])


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    return Path(u.database) if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") else None


def _sqlite_is_empty(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return True
    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'trigger', 'view')"
                            ).fetchone()[0] == 0
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def _check_data_dir_empty(data_dir: Path, allowed_files: set[Path]) -> None:
    if not data_dir.exists():
        return
    found = []
    for p in sorted(data_dir.rglob("*")):
        rel = p.relative_to(data_dir)
        if p.is_dir() and rel.parts[0] in _EMPTY_DIRS:
            continue
        if p.resolve() in allowed_files:
            continue
        found.append(str(rel))
    if found:
        raise KbError(f"The data dir {data_dir} is not empty ({', '.join(found[:5])}{' …' if len(found) > 5 else ''}). "
                      "kb restores only into an empty data dir: point KB_DATA_DIR at a new folder.")


def _pg_is_empty(engine: Engine) -> bool:
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                              "current_schema()")).scalar_one()
    return n == 0


def _pg_drop_all(engine: Engine) -> None:
    """Undo a failed restore on PostgreSQL: the database was empty before, so drop every table in it."""
    with engine.begin() as conn:
        for name in inspect(conn).get_table_names():
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
        conn.execute(text("DROP FUNCTION IF EXISTS kb_audit_guard() CASCADE"))


# --- restore -------------------------------------------------------------------------------------
def _decrypt_to(key: bytes, src: Path, aad: bytes, out: IO[bytes]) -> None:
    with open(src, "rb") as f:
        for part in crypto.open_stream(key, f, aad):
            out.write(part)


def _pg_restore(engine: Engine, key: bytes, dump: Path, aad: bytes, work: Path) -> None:
    tool = _pg_tool("pg_restore")
    uri, env = _libpq(engine)
    with tempfile.TemporaryFile(dir=work) as err:
        proc = subprocess.Popen([tool, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
                                 f"--dbname={uri}"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=err, env=env)
        assert proc.stdin is not None
        try:
            _decrypt_to(key, dump, aad, proc.stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            raise KbError(f"pg_restore failed (exit {rc}): {lines[-1] if lines else 'no message'}")


def restore(container, who: Principal, src: Path, passphrase: str, progress: Progress | None = None,
            rebuild: bool = True) -> RestoreResult:
    """Restore the backup ``src`` into this installation's (empty) data dir and (empty) database."""
    require_role(who, "admin")
    progress = progress or _no_progress
    t0 = time.perf_counter()
    s = container.settings
    src = Path(src)
    data_dir = Path(s.data_dir)
    db_url = s.database_url
    target_dialect = make_url(db_url).get_backend_name()
    target_dialect = "postgresql" if target_dialect.startswith("postgres") else target_dialect
    manifest = read_manifest(src)
    dialect = manifest["database"]["dialect"]
    if dialect != target_dialect:
        raise KbError(f"This backup holds a {dialect} database and the target is {target_dialect}; kb restores "
                      f"into the same kind of database. Set KB_DATABASE_URL accordingly.")
    revision = manifest["database"].get("revision")
    if revision is not None and not migrate.known_revision(revision):
        raise KbError(f"The backup's schema revision {revision} is newer than this kb knows; install the kb "
                      "version that made it (or newer) and restore again.")

    # Refuse a non-empty target before reading keys (cheap checks first), then check the whole backup.
    sqlite_path = _sqlite_path(db_url)
    allowed = set()
    if sqlite_path is not None:
        if not _sqlite_is_empty(sqlite_path):
            raise KbError(f"The database {sqlite_path} is not empty. kb restores only into an empty database.")
        allowed = {Path(str(sqlite_path.resolve()) + sfx) for sfx in ("", "-wal", "-shm", "-journal")}
    allowed.add(container.key_file.resolve())  # an identical key file (a mounted Secret) is compared below
    _check_data_dir_empty(data_dir, allowed)
    engine = None
    if target_dialect == "postgresql":
        engine = make_engine(db_url)
        from app.db import check_connection

        check_connection(engine)
        if not _pg_is_empty(engine):
            engine.dispose()
            raise KbError(f"The database {engine.url.render_as_string(hide_password=True)} is not empty (it has "
                          "tables). kb restores only into an empty database: create a new one.")
    try:
        manifest, ring, data_key = open_backup(src, passphrase, progress)
        key_file = container.key_file
        write_key_file = False
        if s.crypto.master_key is not None:
            if not _same_ring(KeyRing.from_env_key(s.crypto.master_key.get_secret_value()), ring):
                raise KbError("KB_MASTER_KEY is set and differs from the backup's master key ring. Unset it, so "
                              "restore writes the backup's key file, or set it to the backup's key.")
        elif key_file.exists():
            try:
                same = _same_ring(KeyRing.load(key_file), ring)
            except ConfigError:
                same = False
            if not same:
                raise KbError(f"A different master key file already exists at {key_file}. kb restores only into an "
                              "empty installation; move it away or point KB_MASTER_KEY_FILE at a new path.")
        else:
            write_key_file = True
        return _restore_checked(container, who, src, manifest, ring, data_key, engine, sqlite_path, key_file,
                                write_key_file, progress, rebuild, t0)
    finally:
        if engine is not None:
            engine.dispose()


def _restore_checked(container, who, src: Path, manifest: dict, ring: KeyRing, data_key: bytes,
                     pg_engine: Engine | None, sqlite_path: Path | None, key_file: Path, write_key_file: bool,
                     progress: Progress, rebuild: bool, t0: float) -> RestoreResult:
    s = container.settings
    data_dir = Path(s.data_dir)
    backup_id = manifest["backup_id"]
    db_name = manifest["database"]["file"]
    created_data_dir = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # e.g. a volume mount point owned by someone else
        os.chmod(data_dir, 0o700)
    staging = Path(tempfile.mkdtemp(dir=data_dir, prefix=".restore-"))
    placed: list[Path] = []  # what was moved into place, removed again if a later step fails
    db_restored = False
    notes: list[str] = []
    try:
        # database: into staging (SQLite) or the empty target (PostgreSQL), then to head
        advance = progress("database", 1)
        if sqlite_path is not None:
            staged_db = staging / "kb.sqlite3"
            with _create(staged_db) as out:
                _decrypt_to(data_key, src / db_name, _aad(backup_id, db_name), out)
            conn = sqlite3.connect(staged_db)
            try:
                ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                conn.close()
            if ok != "ok":
                raise IntegrityError(f"The backup's SQLite database fails its integrity check ({ok}).")
            engine = make_engine(f"sqlite:///{staged_db}")
        else:
            _pg_restore(pg_engine, data_key, src / db_name, _aad(backup_id, db_name), staging)
            db_restored = True
            engine = pg_engine
        try:
            migrate.upgrade(engine, audit_key=audit.chain_key(ring))  # 0006 re-links an older, unkeyed log
            schema_to = migrate.current_revision(engine)
            head = manifest.get("audit_head")
            from sqlalchemy.orm import Session

            with Session(engine) as session:
                report = audit.verify(session, audit.chain_key(ring), expect_head=tuple(head) if head else None)
        finally:
            if sqlite_path is not None:
                engine.dispose()
        advance(1)
        # blobs and the model manifest, into staging
        entries = {f["path"]: f for f in manifest["files"]}
        blobs = [p for p in entries if p.startswith("blobs/")]
        advance = progress("blobs", sum(int(entries[p]["size"]) for p in blobs))
        for rel in blobs:
            info = _copy_hashed(src / rel, staging / rel, advance)
            if info["sha256"] != entries[rel]["sha256"]:  # changed since it was verified
                raise IntegrityError(f"{rel} in the backup changed while it was being restored.")
        if MODELS_FILE in entries:
            (staging / "models").mkdir()
            with _create(staging / "models" / "manifest.json") as out:
                _decrypt_to(data_key, src / MODELS_FILE, _aad(backup_id, MODELS_FILE), out)
        # move into place
        if write_key_file:
            KeyRing(ring.versions, ring.hmac_key, key_file).save()
            placed.append(key_file)
        for sub in ("blobs", "models"):
            if (staging / sub).exists():
                target = data_dir / sub
                if target.exists():
                    target.rmdir()  # empty: checked before
                os.replace(staging / sub, target)
                placed.append(target)
        if sqlite_path is not None:
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            for sfx in ("-wal", "-shm", "-journal"):
                Path(str(sqlite_path) + sfx).unlink(missing_ok=True)
            os.replace(staging / "kb.sqlite3", sqlite_path)
            placed.append(sqlite_path)
            db_restored = True
        for sub in ("blobs", "index", "models"):
            (data_dir / sub).mkdir(exist_ok=True)
        with container.sessions.begin() as session:
            audit.append(session, container.vault, kind="admin", action="backup.restore", actor=actor(who),
                         target=backup_id, details={"backup_created_at": manifest["created_at"],
                                                    "schema_from": manifest["database"].get("revision"),
                                                    "schema_to": schema_to, "audit_ok": report.ok})
    except BaseException:
        for p in reversed(placed):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if db_restored and pg_engine is not None:
            _pg_drop_all(pg_engine)
        shutil.rmtree(staging, ignore_errors=True)
        if created_data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    indexed = None
    if rebuild:
        advance = progress("indexing", int(manifest["counts"].get("chunks", 0)))
        indexed = container.search_index.rebuild(progress=advance)
    if MODELS_FILE in {f["path"] for f in manifest["files"]}:
        notes.append("The model manifest is restored, not the model files: run `kb models pull` (or copy the "
                     "models folder back); kb checks them against the restored sha256.")
    if pg_engine is not None:
        notes.append("Restored without owners and privileges: run `kb db setup-roles` again (as the DBA), so the "
                     "app role cannot change the audit log.")
    counts = manifest["counts"]
    return RestoreResult(str(data_dir.resolve()), container.engine.url.render_as_string(hide_password=True),
                         backup_id, manifest["created_at"], manifest["database"].get("revision"), schema_to,
                         int(counts.get("documents", 0)), int(counts.get("chunks", 0)), int(counts.get("blobs", 0)),
                         report.ok, report.checked, None if report.ok else
                         f"seq {report.first_bad_seq}: {report.problem}", indexed,
                         round(time.perf_counter() - t0, 2), notes)


def as_dict(result: BackupResult | RestoreResult) -> dict[str, Any]:
    return asdict(result)
