"""Answers first: while a CPU generator writes an answer, background embedding on the same host waits.

llama.cpp's threads spin while they wait for each other, so one busy embedding thread on a shared core
stalls every decoding step (measured on 2 vCPUs: 40 → 2-3 tokens/s while the worker embedded). Splitting
the cores between the roles up front halves both all the time; instead, a generator holds an exclusive
``flock`` on one file while it streams, and the worker, between embedding sub-batches, waits (up to a
bound, so ingestion never starves) while anyone holds it. Exclusive, because two CPU generations at once
(the UI's and the API's processes each hold a model) would fight for the same cores just the same: on
one host they take turns. flock locks belong to open file descriptions:
they work across processes (the UI, the API and ``kb worker``) and between threads of one process, and
the kernel drops them when a process dies, so a crash can never leave the worker waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".generating.lock"


def lock_path(models_dir: Path) -> Path:
    """The one file every process of an installation agrees on (beside the models they load)."""
    return Path(models_dir) / LOCK_NAME


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def generating(path: Path | None) -> Iterator[None]:
    """Mark the enclosed generation as foreground work, waiting for another process's or thread's to end
    (None: no marking, e.g. on a GPU). Not reentrant: never nest it."""
    if path is None:
        yield
        return
    try:
        fd = _open(path)
    except OSError:  # a read-only models dir: generation must not fail for want of a hint
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def busy(path: Path) -> bool:
    """Whether some generator holds the foreground lock right now."""
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def wait_while_busy(path: Path, max_wait_s: float, poll_s: float = 0.05) -> float:
    """Sleep while a generator runs, at most ``max_wait_s``; the seconds waited."""
    t0 = time.monotonic()
    while max_wait_s > 0 and busy(path) and time.monotonic() - t0 < max_wait_s:
        time.sleep(poll_s)
    return time.monotonic() - t0
