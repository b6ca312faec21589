"""Local users cannot read kb's data: modes 0700/0600 whatever the umask; guessable passwords refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from app.accounts import check_password_strength
from app.errors import KbError


def test_init_under_umask_022_leaves_nothing_readable_by_others(tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")} | {"KB_DATA_DIR": str(data)}
    r = subprocess.run(["/bin/sh", "-c", f"umask 022 && exec {sys.executable} -m app init"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    paths = [data, *data.rglob("*")]
    assert any(p.name == "kb.sqlite3" for p in paths) and any(p.name == "master.key" for p in paths)
    loose = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert loose == {}


def test_a_data_dir_made_loose_by_hand_is_closed_again(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    from app.services.container import ensure_data_dir

    ensure_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


@pytest.mark.parametrize("weak", ["aaaaaaaaaa", "1234567890", "qwertyuiop", "Password123!", "abcabcabcabc",
                                  "woaini1314520", "0987654321", "ababababab"])
def test_guessable_passwords_are_refused(weak):
    with pytest.raises(KbError, match="too easy to guess"):
        check_password_strength(weak)


@pytest.mark.parametrize("good", ["admin-password-1", "correct horse battery", "Lz8#qW2m!pR4", "春眠不觉晓处处闻啼鸟"])
def test_reasonable_passwords_pass(good):
    check_password_strength(good)
