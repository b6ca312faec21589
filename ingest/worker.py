"""The ingestion worker: claims jobs and processes them until told to stop (or the queue is empty)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from app.container import Container
from ingest import queue
from ingest.pipeline import StageTimes, process_batch
from ingest.types import DocStatus

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, container: Container, name: str | None = None):
        self.container = container
        self.name = name or worker_id()
        self.stop = threading.Event()
        self.times = StageTimes()

    def run_once(self, on_done: Callable[[int, DocStatus | None], None] | None = None) -> int:
        """Process jobs until none is claimable. Returns how many were processed."""
        n = 0
        cfg = self.container.settings.ingest
        while not self.stop.is_set():
            claims = []
            with self.container.sessions() as s:
                while len(claims) < cfg.claim_batch:
                    claim = queue.claim(s, self.name, cfg.lease_seconds)
                    if claim is None:
                        break
                    claims.append(claim)
            if not claims:
                return n
            for claim, status in zip(claims, process_batch(self.container, claims, self.times), strict=True):
                n += 1
                if on_done:
                    on_done(claim.document_id, status)
        return n

    def run_forever(self) -> None:
        poll = self.container.settings.ingest.poll_seconds
        log.info("worker %s started", self.name)
        while not self.stop.is_set():
            try:
                if self.run_once() == 0:
                    self.stop.wait(poll)
            except Exception:  # a database hiccup must not kill the worker
                log.exception("worker loop error; retrying")
                time.sleep(poll)
        log.info("worker %s stopped", self.name)
