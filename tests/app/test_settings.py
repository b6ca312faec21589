"""Settings never ignore a KB_ variable: aliases are honoured, typos stop kb with the closest valid name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import ENV_ALIASES, NON_SETTING_VARIABLES, LlmSettings, Settings, check_environment, env_names

ROOT = Path(__file__).resolve().parents[2]
PG_URL = "postgresql+psycopg://kb@127.0.0.1:1/kb"  # nothing listens on port 1


@pytest.fixture
def clean_env(monkeypatch):
    """No KB_ variable from the test run itself (the tests' own conftest sets some)."""
    for key in [k for k in os.environ if k.upper().startswith("KB_")]:
        monkeypatch.delenv(key)
    return monkeypatch


def test_kwargs_with_a_clean_environment(clean_env, tmp_path):
    s = Settings(data_dir=tmp_path, database={"url": "sqlite:///x.db"})
    assert s.data_dir == tmp_path and s.database_url == "sqlite:///x.db"
    assert Settings().database_url.startswith("sqlite:///")


def test_database_url_alias_is_used(clean_env):
    clean_env.setenv("KB_DATABASE_URL", PG_URL)
    assert Settings().database_url == PG_URL
    clean_env.setenv("KB_DATABASE__URL", PG_URL)  # both, agreeing
    assert Settings().database_url == PG_URL


def test_database_url_alias_conflict(clean_env):
    clean_env.setenv("KB_DATABASE_URL", PG_URL)
    clean_env.setenv("KB_DATABASE__URL", "sqlite:///other.db")
    with pytest.raises(ConfigError, match="KB_DATABASE_URL and KB_DATABASE__URL are both set"):
        Settings()


def test_master_key_aliases_are_used(clean_env, tmp_path):
    clean_env.setenv("KB_MASTER_KEY", "ab" * 32)
    clean_env.setenv("KB_MASTER_KEY_FILE", str(tmp_path / "k"))
    s = Settings()
    assert s.crypto.master_key.get_secret_value() == "ab" * 32
    assert s.crypto.master_key_file == tmp_path / "k"


def test_typo_names_the_closest_setting(clean_env):
    clean_env.setenv("KB_LLM__MAXTOKENS", "64")
    with pytest.raises(ConfigError, match=r"KB_LLM__MAXTOKENS \(did you mean KB_LLM__MAX_TOKENS\?\)"):
        Settings()
    with pytest.raises(ConfigError):  # kwargs do not switch the check off: the environment is still read
        Settings(data_dir=Path("elsewhere"))


def test_unknown_names_without_a_close_match_and_several_at_once():
    with pytest.raises(ConfigError) as err:
        check_environment({"kb_zzzqqq": "1", "kb_retrieval__topk": "3", "PATH": "/bin"})
    msg = str(err.value)
    assert "KB_ZZZQQQ (no setting has a similar name)" in msg
    assert "KB_RETRIEVAL__TOPK (did you mean KB_RETRIEVAL__TOP_K?)" in msg
    assert "\n" not in msg


def test_names_are_case_insensitive_like_pydantic_settings(clean_env):
    clean_env.setenv("kb_Llm__Max_Tokens", "77")
    clean_env.setenv("kb_database_url", PG_URL)
    s = Settings()
    assert s.llm.max_tokens == 77 and s.database_url == PG_URL
    clean_env.setenv("kb_llm__maxtokens", "1")
    with pytest.raises(ConfigError, match="did you mean KB_LLM__MAX_TOKENS"):
        Settings()


def test_valid_names_cover_every_field_and_alias(clean_env):
    names = set(env_names())
    assert {"KB_DATA_DIR", "KB_LLM", "KB_DATABASE__URL", *ENV_ALIASES} <= names
    assert {f"KB_LLM__{f.upper()}" for f in LlmSettings.model_fields} <= names
    for name in names:  # none of them trips the check
        assert check_environment({name.lower(): "x"}) is not None
    clean_env.setenv("KB_LLM", '{"max_tokens": 9}')
    assert Settings().llm.max_tokens == 9


def test_non_setting_variables_pass(clean_env):
    for name in NON_SETTING_VARIABLES:
        clean_env.setenv(name, "x")
    assert Settings().llm.max_tokens == LlmSettings().max_tokens


def test_every_kb_name_the_repository_uses_is_known():
    """A KB_ variable kb, its tests or benchmarks use must be a setting or in NON_SETTING_VARIABLES."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    known = set(env_names()) | NON_SETTING_VARIABLES
    used: dict[str, str] = {}
    for rel in files.splitlines():
        path = ROOT / rel
        if rel == "tests/app/test_settings.py" or not path.is_file() or path.suffix in {".png", ".gguf", ".zip"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for name in re.findall(r"\bKB_[A-Z][A-Z0-9_]*[A-Z0-9]", text):
            used.setdefault(name, rel)
    unknown = {n: where for n, where in used.items() if n not in known}
    assert not unknown, f"KB_ names that are no setting (add to NON_SETTING_VARIABLES if meant): {unknown}"


def kb(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("KB_")}
    return subprocess.run([sys.executable, "-m", "app", *args], env={**base, **env}, capture_output=True,
                          text=True, timeout=120)


def test_cli_uses_the_database_url_alias(tmp_path):
    r = kb(["users", "list"], {"KB_DATA_DIR": str(tmp_path), "KB_DATABASE_URL": PG_URL})
    # It tried the PostgreSQL URL (before: SQLite in the data dir, without a word).
    assert r.returncode != 0 and "Cannot reach the database" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "kb.sqlite3").exists()


def test_cli_stops_on_a_typo_with_the_suggestion(tmp_path):
    r = kb(["users", "list"], {"KB_DATA_DIR": str(tmp_path), "KB_LLM__MAXTOKENS": "64"})
    assert r.returncode == ConfigError.exit_code, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "KB_LLM__MAXTOKENS" in r.stderr and "did you mean KB_LLM__MAX_TOKENS?" in r.stderr
    assert not (tmp_path / "kb.sqlite3").exists()
