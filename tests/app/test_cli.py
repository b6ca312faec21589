"""The CLI as a user meets it: real subprocesses, clear messages, non-zero exits, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def kb(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], env={**os.environ, **env}, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(tmp_path, db_url):
    return {"KB_DATA_DIR": str(tmp_path / "data"), "KB_DATABASE__URL": db_url}


def test_init_users_collections_round_trip(env):
    r = kb(["init", "--admin-password-stdin", "--json"], env, stdin="a-long-password\n")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["admin_created"] == "admin" and out["admin_password"] is None
    again = kb(["init", "--json"], env)
    assert again.returncode == 0 and json.loads(again.stdout)["admin_created"] is None  # idempotent

    added = kb(["users", "add", "alice", "--role", "staff", "--password-stdin"], env, "alice-password-1\n")
    assert added.returncode == 0, added.stderr
    dup = kb(["users", "add", "alice", "--role", "staff"], env)
    assert dup.returncode != 0 and "already exists" in dup.stderr and "Traceback" not in dup.stderr
    bad = kb(["users", "add", "bob", "--role", "boss"], env)
    assert bad.returncode != 0 and "Unknown role" in bad.stderr and "Traceback" not in bad.stderr

    assert kb(["collections", "add", "hr"], env).returncode == 0
    assert kb(["collections", "grant", "hr", "--user", "alice"], env).returncode == 0
    cols = json.loads(kb(["collections", "list", "--json"], env).stdout)
    assert cols[0]["name"] == "hr" and cols[0]["grants"] == ["user:alice(r)"]
    assert kb(["users", "disable", "alice"], env).returncode == 0
    users = {u["name"]: u for u in json.loads(kb(["users", "list", "--json"], env).stdout)}
    assert users["alice"]["disabled"] is True and users["admin"]["role"] == "admin"


def test_bad_database_url_is_explained(tmp_path):
    r = kb(["users", "list"], {"KB_DATA_DIR": str(tmp_path), "KB_DATABASE__URL": "not a url"})
    assert r.returncode != 0 and "not a database URL" in r.stderr and "Traceback" not in r.stderr


def test_unreachable_postgres_is_explained(tmp_path):
    url = "postgresql+psycopg://kb@127.0.0.1:1/kb"  # nothing listens on port 1
    r = kb(["users", "list"], {"KB_DATA_DIR": str(tmp_path), "KB_DATABASE__URL": url})
    assert r.returncode != 0 and "Cannot reach the database" in r.stderr and "Traceback" not in r.stderr


def test_unwritable_data_dir_is_explained(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = kb(["init"], {"KB_DATA_DIR": str(blocker / "data")})
    assert r.returncode != 0 and "not writable" in r.stderr and "Traceback" not in r.stderr


def test_invalid_setting_is_explained(tmp_path):
    r = kb(["users", "list"], {"KB_DATA_DIR": str(tmp_path), "KB_CRYPTO__CIPHER": "rot13"})
    assert r.returncode != 0 and "Invalid KB_ setting" in r.stderr and "Traceback" not in r.stderr


def test_help_explains_every_command():
    r = kb(["--help"], {})
    assert r.returncode == 0
    for name in ("init", "migrate", "users", "collections", "keys"):
        assert name in r.stdout
