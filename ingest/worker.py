"""The ingestion worker: claims jobs and processes them until told to stop (or the queue is empty)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ingest import queue
from ingest.pipeline import (
    Batch,
    InFlight,
    Loaded,
    StageTimes,
    embed_batch,
    mark_ocr_waiting,
    prepare_batch,
    read_scan,
    write_batch,
)
from ingest.types import DocStatus, IngestContext

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseKeeper:
    """Renews the leases of the jobs a worker holds, from a background thread, every third of a lease.

    A batch can take longer than one lease (big files, a slow model, a batch waiting behind another);
    without this, another worker would take its jobs over while they are still being worked on.
    """

    def __init__(self, container: IngestContext) -> None:
        self.container = container
        self._held: dict[int, queue.Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, claims: list[queue.Claim]) -> None:
        with self._lock:
            self._held.update((c.job_id, c) for c in claims)

    def release(self, claims: list[queue.Claim]) -> None:
        with self._lock:
            for c in claims:
                self._held.pop(c.job_id, None)

    def renew(self) -> None:
        with self._lock:
            claims = list(self._held.values())
        if not claims:
            return
        with self.container.sessions() as s:
            lost = queue.renew(s, claims, self.container.settings.ingest.lease_seconds)
        with self._lock:  # a job finished meanwhile is not running any more, but it was not lost
            lost = [c for c in lost if c.job_id in self._held]
        if lost:  # their documents are dropped when we try to write them
            log.warning("%d job(s) were taken over by another worker", len(lost))
            self.release(lost)

    def _run(self) -> None:
        while not self._stop.wait(self.container.settings.ingest.lease_seconds / 3):
            try:
                self.renew()
            except Exception:  # a database hiccup: try again next time, the lease still has time
                log.warning("could not renew job leases", exc_info=True)

    def __enter__(self) -> LeaseKeeper:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kb-leases", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._held.clear()


def process_now(container: IngestContext, claim: queue.Claim, password: str | None = None) -> DocStatus | None:
    """Parse, scrub, chunk, embed and write one claimed document here and now, in this process.

    For a retry with a password: the password stays an argument of this call (it opens the file once,
    in memory) and never reaches the queue, the database or another process. Returns the final status
    (None if another worker took the job over)."""
    times = StageTimes()
    with LeaseKeeper(container) as leases:
        leases.hold([claim])
        batch = prepare_batch(container, [claim], times, {}, {claim.document_id: password} if password else None)
        return write_batch(container, batch, embed_batch(container, batch, times), times)[0]


class Worker:
    def __init__(self, container: IngestContext, name: str | None = None):
        self.container = container
        self.name = name or worker_id()
        self.stop = threading.Event()
        self.times = StageTimes()

    def run_once(self, on_done: Callable[[int, DocStatus | None], None] | None = None) -> int:
        """Process jobs until none is claimable and no scan is being read. Returns how many were processed.

        Two batches are in flight: while the model embeds one (in a thread; it releases the GIL), this
        thread writes the previous one and parses, scrubs and chunks the next, so the cores never wait
        for Python. Each document still ends in its own transaction.

        Documents that need OCR (scans, photos) are read in a third thread, the OCR lane, one at a
        time: a 300-page scan takes minutes, and the text documents claimed with it and after it go
        on meanwhile. Once read, a scan joins the next batch for scrubbing, chunking and embedding."""
        n = 0
        pending: tuple[Batch, Future] | None = None
        in_flight: InFlight = {}
        reading: dict[Future, queue.Claim] = {}
        with ThreadPoolExecutor(1, thread_name_prefix="kb-embed") as embedding, \
                ThreadPoolExecutor(1, thread_name_prefix="kb-ocr") as ocr_lane, \
                LeaseKeeper(self.container) as leases:
            while True:
                claims = [] if self.stop.is_set() else self._claim()
                leases.hold(claims)
                preloaded: list[Loaded] = []
                for done in [f for f in reading if f.done()]:
                    claim = reading.pop(done)
                    result = done.result()
                    if isinstance(result, Loaded):
                        preloaded.append(result)
                    else:  # settled in the lane (too large, empty, broken, taken over)
                        leases.release([claim])
                        n += 1
                        if on_done:
                            on_done(claim.document_id, result)
                batch = prepare_batch(self.container, claims, self.times, in_flight, defer_ocr=True,
                                      preloaded=preloaded) if claims or preloaded else None
                for claim, pages in batch.deferred if batch else []:
                    mark_ocr_waiting(self.container, claim, pages)
                    reading[ocr_lane.submit(read_scan, self.container, claim, self.times, in_flight)] = claim
                future = embedding.submit(embed_batch, self.container, batch, self.times) if batch else None
                if pending is not None:
                    done_batch, vectors = pending
                    statuses = write_batch(self.container, done_batch, vectors.result(), self.times)
                    leases.release(done_batch.claims)
                    for prep in done_batch.ready:  # written (or failed): the database answers for them now
                        in_flight.pop((prep.collection_id, prep.content_hmac), None)
                    for claim, status in zip(done_batch.claims, statuses, strict=True):
                        n += 1
                        if on_done:
                            on_done(claim.document_id, status)
                    pending = None
                if batch is not None and future is not None:
                    pending = (batch, future)
                elif reading:  # nothing to claim now, scans still being read: wait a little, claim again
                    wait(list(reading), timeout=min(0.5, self.container.settings.ingest.poll_seconds),
                         return_when=FIRST_COMPLETED)
                else:
                    return n

    def start_draining(self, on_done: Callable[[int, DocStatus | None], None] | None = None) -> Callable[[], int]:
        """Index in a background thread while the caller is still queueing files (so the embedder is busy
        from the first batch on, not after the last file is sealed). Call the returned function once
        everything is queued: it waits until the queue is empty and returns how many were processed."""
        all_queued = threading.Event()
        processed = [0]
        errors: list[BaseException] = []

        def loop() -> None:
            try:
                while not self.stop.is_set():
                    last_round = all_queued.is_set()
                    got = self.run_once(on_done)
                    processed[0] += got
                    if last_round and got == 0:
                        return
                    if got == 0:
                        all_queued.wait(0.05)
            except BaseException as exc:  # handed to the caller
                errors.append(exc)

        thread = threading.Thread(target=loop, name="kb-drain", daemon=True)
        thread.start()

        def finish() -> int:
            all_queued.set()
            try:
                while thread.is_alive():
                    thread.join(0.2)  # in slices, so Ctrl-C reaches this thread
            except KeyboardInterrupt:
                self.stop.set()
                raise
            if errors:
                raise errors[0]
            return processed[0]

        return finish

    def _claim(self) -> list[queue.Claim]:
        with self.container.sessions() as s:
            return queue.claim(s, self.name, self.container.settings.ingest.lease_seconds,
                               self.container.settings.ingest.claim_batch)

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
