"""`kb serve`: refuses an uninitialised data dir; Ctrl-C stops the UI and the worker together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import make_settings
from tests.e2e.conftest import free_port, wait_healthy


def _env(data) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env.update({"KB_DATA_DIR": str(data), "KB_API__PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    return env


def _initialised(data):
    """A data dir after `kb init` (SQLite), its connections closed so kb serve finds it free."""
    from app.services.container import Container
    from app.services.setup import init

    c = Container(make_settings(data, f"sqlite:///{data / 'kb.sqlite3'}"))
    init(c, "admin", "admin-password-1")
    c.engine.dispose()
    return data


def test_serve_refuses_an_uninitialised_data_dir(tmp_path):
    r = subprocess.run([sys.executable, "-m", "app", "serve", "--port", str(free_port())], env=_env(tmp_path / "d"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "kb init" in r.stderr


def test_ctrl_c_stops_ui_and_worker(tmp_path):
    data = _initialised(tmp_path / "data")
    port = free_port()
    # A terminal's Ctrl-C signals the whole foreground process group: emulate it with killpg.
    # A shell without job control starts background commands with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored; give kb the terminal's default, whatever launched this test run.
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], env=_env(data),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        time.sleep(1.0)  # let the worker reach its wait loop
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert f"kb is running at http://localhost:{port}" in out
    assert "worker stopped" in out and "kb stopped" in out, out
    time.sleep(0.5)
    leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"processes left in the group: {leftover}"


def test_kill_9_leaves_no_orphans_and_a_restart_works(tmp_path):
    data = _initialised(tmp_path / "data")
    port = free_port()

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], env=_env(data),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    first = start()
    try:
        wait_healthy(f"http://127.0.0.1:{port}", first)
        children = subprocess.run(["pgrep", "-P", str(first.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 3, children  # the UI, the API and the worker
        first.kill()  # SIGKILL: kb serve cannot clean up
        first.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in children):
            time.sleep(0.2)
        alive = [pid for pid in children if os.path.exists(f"/proc/{pid}")
                 and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"]  # a zombie is gone
        assert alive == [], f"orphans still running: {alive}"
        second = start()
        try:
            wait_healthy(f"http://127.0.0.1:{port}", second)  # the port is free again at once
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.communicate(timeout=40)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


def _worker(data, sigint=signal.SIG_DFL) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "app", "worker"], env=_env(data), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    assert "waiting for jobs" in proc.stdout.readline()
    return proc


def test_worker_stops_cleanly_on_ctrl_c_followed_at_once_by_sigterm(tmp_path):
    """What kb serve does on Ctrl-C: the terminal's SIGINT and kb serve's SIGTERM a moment later. A
    handler that set the stop Event itself could deadlock inside that Event's lock (a flaky 15 s hang)."""
    data = _initialised(tmp_path / "data")
    for _ in range(5):
        proc = _worker(data)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGINT)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "worker stopped" in out, out


def test_a_second_ctrl_c_stops_the_worker_at_once(tmp_path):
    proc = _worker(_initialised(tmp_path / "data"))
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "stopped at once" in out, out


def test_a_worker_started_with_sigint_ignored_keeps_ignoring_it(tmp_path):
    """A shell's background job (or nohup) starts with SIGINT ignored: the terminal's Ctrl-C is not for it."""
    proc = _worker(_initialised(tmp_path / "data"), sigint=signal.SIG_IGN)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "worker stopped" in out, out
