"""Answers first: background embedding waits while a CPU generator streams (app/foreground.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np

from app import foreground
from app.settings import IngestSettings
from ingest.pipeline import StageTimes, embed_batch

HOLD = """
import sys, time
from pathlib import Path
from app import foreground
with foreground.generating(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_generation_is_seen_from_another_thread_and_released_after(tmp_path) -> None:
    lock = foreground.lock_path(tmp_path / "models")
    assert not foreground.busy(lock)
    inside, leave = threading.Event(), threading.Event()

    def generate() -> None:
        with foreground.generating(lock):
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=generate)
    t.start()
    assert inside.wait(5)
    assert foreground.busy(lock)
    order = []

    def second() -> None:  # another answer (the API's process, say) waits its turn
        with foreground.generating(lock):
            order.append("second")

    t2 = threading.Thread(target=second)
    t2.start()
    time.sleep(0.2)
    order.append("first done")
    leave.set()
    t.join()
    t2.join()
    assert order == ["first done", "second"]
    assert not foreground.busy(lock)
    assert oct(lock.stat().st_mode & 0o777) == "0o600"


def test_a_killed_generator_process_never_leaves_the_worker_waiting(tmp_path) -> None:
    lock = foreground.lock_path(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    try:
        assert proc.stdout.readline().strip() == "holding"
        assert foreground.busy(lock)
        waited = foreground.wait_while_busy(lock, max_wait_s=0.3)
        assert 0.25 <= waited < 2  # bounded: ingestion never starves
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not foreground.busy(lock)
    assert foreground.wait_while_busy(lock, max_wait_s=5) < 0.5


class RecordingEmbedder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        self.calls.append((time.monotonic(), len(texts)))
        return np.ones((len(texts), 3), dtype=np.float32)


def _context(tmp_path, embedder, **ingest):
    settings = SimpleNamespace(ingest=IngestSettings(**ingest), models_dir=tmp_path / "models")
    return SimpleNamespace(settings=settings, embedder=embedder)


def _batch(n_chunks: int):
    chunks = [SimpleNamespace(text=f"chunk {i}") for i in range(n_chunks)]
    return SimpleNamespace(ready=[SimpleNamespace(chunks=chunks[:5]), SimpleNamespace(chunks=chunks[5:])])


def test_embedding_waits_between_sub_batches_while_an_answer_is_written(tmp_path) -> None:
    emb = RecordingEmbedder()
    ctx = _context(tmp_path, emb, embed_sub_batch=4, yield_to_answers_s=10)
    lock = foreground.lock_path(ctx.settings.models_dir)
    released = []

    def answer() -> None:
        with foreground.generating(lock):
            time.sleep(0.5)
            released.append(time.monotonic())

    t = threading.Thread(target=answer)
    t.start()
    time.sleep(0.1)
    times = StageTimes()
    vectors = embed_batch(ctx, _batch(10), times)
    t.join()
    assert vectors.shape == (10, 3)
    assert [n for _, n in emb.calls] == [4, 4, 2]
    assert emb.calls[0][0] >= released[0]  # nothing embedded while the answer was being written
    assert times.seconds["yield_to_answers"] >= 0.3


def test_waiting_can_be_switched_off(tmp_path) -> None:
    emb = RecordingEmbedder()
    ctx = _context(tmp_path, emb, yield_to_answers_s=0)
    with foreground.generating(foreground.lock_path(ctx.settings.models_dir)):
        t0 = time.monotonic()
        assert embed_batch(ctx, _batch(7), StageTimes()).shape == (7, 3)
    assert time.monotonic() - t0 < 0.5 and [n for _, n in emb.calls] == [7]
