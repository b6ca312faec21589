"""The process's search index follows the database: new and deleted chunks without a restart, sealed
snapshots that reload to the same results, and a rebuild from the chunks table."""

from __future__ import annotations

import pytest

from app.services import documents
from app.services.search import SearchIndex
from ingest.submit import submit_paths
from ingest.worker import Worker

pytestmark = pytest.mark.slow


def add_doc(container, tmp_path, name: str, text: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.txt").write_text(text)
    list(submit_paths(container, [folder], "c"))
    Worker(container).run_once()


def test_index_follows_workers_and_snapshots_reload(container, tmp_path):
    add_doc(container, tmp_path, "a", "Quarterly revenue grew because of strong subscription sales in Asia.")
    index = container.search_index
    assert len(index) == 1

    # A worker (here: in-process, but through the database only) adds a document: found without a restart.
    add_doc(container, tmp_path, "b", "Firewall rules must be reviewed by the security officer every month.")
    hits = index.search("who reviews firewall rules", 3, None)
    assert len(index) == 2
    with container.sessions() as s:
        top = documents.get_document(s, _doc_of(container, hits[0].chunk_id))
    assert top.source.endswith("b.txt")

    # Deleting removes its chunks from search.
    with container.sessions.begin() as s:
        documents.delete_document(s, container.settings.blobs_dir, top.id)
    assert all(_doc_of(container, h.chunk_id) != top.id for h in index.search("firewall rules", 5, None))
    assert len(index) == 1

    # A fresh process loads the sealed snapshot and agrees with the live index.
    index.save_snapshot()
    fresh = SearchIndex(container)
    q = "subscription revenue"
    assert [h.chunk_id for h in fresh.search(q, 5, None)] == [h.chunk_id for h in index.search(q, 5, None)]
    assert fresh.rebuild() == 1


def _doc_of(container, chunk_id: int) -> int:
    from app.models import Chunk

    with container.sessions() as s:
        return s.get(Chunk, chunk_id).document_id
