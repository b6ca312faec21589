from __future__ import annotations

import io
import os
import subprocess

import pytest
from sqlalchemy import select

from app import crypto
from app.errors import ConfigError, IntegrityError
from app.keys import KeyRing, Vault
from app.models import DataKey

CIPHERS = ["aes-256-gcm", "sm4-gcm"]


@pytest.mark.parametrize("name", CIPHERS)
def test_round_trip_and_every_kind_of_damage(name):
    cipher = crypto.get_cipher(name)
    key, other = os.urandom(cipher.key_len), os.urandom(cipher.key_len)
    aad = crypto.aad_of("chunks", 7, 42, 1)
    blob = crypto.seal(cipher, key, "机密 text".encode(), aad)
    assert crypto.open_sealed(key, blob, aad) == "机密 text".encode()
    assert crypto.seal(cipher, key, b"same", aad) != crypto.seal(cipher, key, b"same", aad)  # fresh nonces

    tampered = bytearray(blob)
    tampered[-20] ^= 1
    damaged = {
        "tampered": (key, bytes(tampered), aad),
        "wrong aad (moved to another row)": (key, blob, crypto.aad_of("chunks", 7, 43, 1)),
        "wrong key": (other, blob, aad),
        "truncated": (key, blob[:-5], aad),
        "too short": (key, blob[:10], aad),
    }
    for what, (k, b, a) in damaged.items():
        with pytest.raises(IntegrityError):
            crypto.open_sealed(k, b, a)
            pytest.fail(what)


def test_unknown_cipher_refuses_to_start():
    with pytest.raises(ConfigError, match="Unknown cipher"):
        crypto.get_cipher("rot13")


def test_missing_sm4_fails_closed(monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("no SM4 in this OpenSSL")

    monkeypatch.setattr(crypto.Sm4Gcm, "encrypt", broken)
    with pytest.raises(ConfigError, match="not available in this OpenSSL build"):
        crypto.get_cipher("sm4-gcm")


@pytest.mark.parametrize("name", CIPHERS)
def test_sealed_streams_detect_truncation_and_reordering(name, tmp_path):
    cipher = crypto.get_cipher(name)
    key = os.urandom(cipher.key_len)
    data = os.urandom(crypto.FILE_SEGMENT * 2 + 123)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    dst = tmp_path / "out.kbf"
    assert crypto.seal_file(cipher, key, src, dst, b"blob:1") == len(data)
    assert crypto.open_file(key, dst, b"blob:1") == data
    sealed = dst.read_bytes()
    seg = 4 + len(crypto.MAGIC) + 1 + crypto.NONCE_LEN + crypto.FILE_SEGMENT + crypto.TAG_LEN
    head = len(crypto.FILE_MAGIC)
    cases = {
        "drop last segment": sealed[: head + 2 * seg],
        "swap segments": sealed[:head] + sealed[head + seg: head + 2 * seg] + sealed[head: head + seg]
        + sealed[head + 2 * seg:],
        "trailing garbage": sealed + b"x",
    }
    for what, bad in cases.items():
        with pytest.raises(IntegrityError):
            b"".join(crypto.open_stream(key, io.BytesIO(bad), b"blob:1"))
            pytest.fail(what)
    with pytest.raises(IntegrityError):
        crypto.open_file(key, dst, b"blob:2")
    empty = tmp_path / "empty.kbf"
    crypto.seal_bytes_to_file(cipher, key, b"", empty, b"e")
    assert crypto.open_file(key, empty, b"e") == b""


def test_key_file_is_private_and_never_printed(tmp_path):
    ring = KeyRing.create(tmp_path / "keys" / "master.key")
    assert (ring.path.stat().st_mode & 0o777) == 0o600
    assert ring.versions[1].hex() not in repr(ring)
    assert KeyRing.load(ring.path).versions == ring.versions
    (tmp_path / "bad.key").write_text("{}")
    with pytest.raises(ConfigError, match="damaged"):
        KeyRing.load(tmp_path / "bad.key")
    with pytest.raises(ConfigError, match="kb init"):
        KeyRing.load(tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="64 hexadecimal"):
        KeyRing.from_env_key("abc")


@pytest.mark.parametrize("cipher", CIPHERS)
def test_rotation_keeps_everything_readable(container, cipher):
    vault = Vault(container.vault.ring, crypto.get_cipher(cipher))
    sealed = []
    with container.sessions.begin() as s:
        for i in range(5):
            dek_id, dek = vault.new_data_key(s)
            sealed.append((dek_id, vault.seal(dek, f"record {i}", "t", i)))
    with container.sessions.begin() as s:
        version, count = vault.rotate(s)
    assert version == 2 and count == 5
    fresh = Vault(KeyRing.load(container.key_file), crypto.get_cipher(cipher))  # new process, cold cache
    with container.sessions() as s:
        assert {r.kek_version for r in s.scalars(select(DataKey))} == {2}
        for i, (dek_id, blob) in enumerate(sealed):
            assert fresh.open_text(fresh.data_key(s, dek_id), blob, "t", i) == f"record {i}"


def test_interrupted_rotation_loses_nothing(container):
    vault = container.vault
    with container.sessions.begin() as s:
        dek_id, dek = vault.new_data_key(s)
        blob = vault.seal(dek, "keep me", "t", 1)
    s = container.sessions()
    vault.rotate(s)  # new version written to the key file, rows re-wrapped in the open transaction...
    s.rollback()  # ...and the process dies before commit
    s.close()
    fresh = Vault(KeyRing.load(container.key_file), vault.cipher)
    with container.sessions() as s:
        assert s.get(DataKey, dek_id).kek_version == 1
        assert fresh.open_text(fresh.data_key(s, dek_id), blob, "t", 1) == "keep me"
    with container.sessions.begin() as s:  # running it again finishes the job
        version, count = fresh.rotate(s)
    assert (version, count) == (3, 1)


@pytest.mark.slow
def test_no_plaintext_in_database_or_files(container, db_url, tmp_path):
    """After real ingestion, a search and a logged question, the marker is nowhere on disk: not in the data
    dir (database file, blobs, index snapshots), not in a pg_dump."""
    from app.services import qa
    from ingest.submit import submit_paths
    from ingest.worker import Worker

    marker = "ZEBRAMARKER7731"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "memo.md").write_text(f"# {marker} quarterly memo\n\nThe {marker} project budget is approved. "
                                    f"Contact the {marker} office for details.\n\n## {marker} annex\n\nMore text.")
    list(submit_paths(container, [folder], "c"))
    Worker(container).run_once()
    hits = container.search_index.search(marker, 5, None)
    assert hits  # BM25 finds it, so the sealed snapshot holds the term
    container.search_index.save_snapshot()
    qa._record(container, qa.caller_for(container, None, "cli"), qa.AskResult(question=f"What is {marker}?",
                                                                              answer=f"{marker} is a project."),
               "ok", None)
    container.engine.dispose()
    needle = marker.encode()
    files = [p for p in container.settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.parent.name == "index" for p in files) and any("blobs" in p.parts for p in files)
    for path in files:
        assert needle not in path.read_bytes(), path
        assert needle.lower() not in path.read_bytes().lower(), path
    if db_url.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        u = make_url(db_url)
        dump = subprocess.run(["pg_dump", "-h", u.host or "127.0.0.1", "-U", u.username or "postgres",
                               "-p", str(u.port or 5432), u.database], capture_output=True, check=True).stdout
        assert b"CREATE TABLE" in dump and needle.lower() not in dump.lower()
