"""Files uploaded in parallel into a collection that does not exist yet all land in it (the browser's uploader
sends a folder's files three at a time; the losers of the race to create the collection used to fail)."""

from __future__ import annotations

import io
import threading

from app.services import documents, qa


def test_parallel_uploads_into_a_new_collection(container):
    admin = qa.caller_for(container, "admin", "ui")
    n = 8
    start = threading.Barrier(n)
    results: list = []
    errors: list = []

    def upload(i: int) -> None:
        start.wait()
        try:
            results.extend(documents.save_uploads(
                container, admin, [documents.Upload(f"note-{i}.txt", io.BytesIO(f"Note number {i}.".encode()))],
                "brand-new"))
        except Exception as exc:  # the test reports every failure, not just the first
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(r.outcome for r in results) == ["queued"] * n
    assert {d.collection for d in documents.list_docs(container, admin)} == {"brand-new"}
