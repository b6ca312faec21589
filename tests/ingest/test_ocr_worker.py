"""OCR in the worker: scans read in their own lane while text documents go on, progress shown in the
queue, and each OCR limit taken from settings."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from app.services import documents
from app.services.container import Container
from app.services.setup import init
from ingest import ocr
from ingest.options import OcrDeferred, ParseOptions
from ingest.parsers import parse
from ingest.submit import submit_paths
from ingest.types import DocStatus
from ingest.worker import Worker
from tests.conftest import make_settings
from tests.ingest.test_ocr import page, scanned_pdf


def tiff(pages: int, size: tuple[int, int] = (1200, 500)) -> bytes:
    out = io.BytesIO()
    imgs = [page([f"Section {n} of the annual report."], size) for n in range(1, pages + 1)]
    imgs[0].save(out, "TIFF", save_all=True, append_images=imgs[1:])
    return out.getvalue()


def test_read_pages_is_the_one_loop_with_both_limits_and_progress() -> None:
    loaded: list[int] = []
    seen: list[tuple[int, int]] = []

    def load(n: int):
        loaded.append(n)
        return page([f"Page {n} of the ledger."], (900, 300))

    pages = [(n, lambda n=n: load(n)) for n in (1, 2, 3, 4)]
    run = ocr.read_pages(pages, max_pages=2, max_seconds=600, progress=lambda d, t: seen.append((d, t)))
    assert run.read == 2 and sorted(run.texts) == [1, 2] and "Page 2 of the ledger" in run.texts[2]
    assert loaded == [1, 2] and seen == [(1, 2), (2, 2)]  # pages past the limit are never rendered
    assert run.stopped == "stopped at the 2-page OCR limit (ingest.ocr_max_pages)"
    run = ocr.read_pages(pages, max_pages=10, max_seconds=0.001)
    assert run.read == 1 and run.stopped == "stopped at the 0.001-second OCR limit (ingest.ocr_max_seconds)"


def test_seconds_limit_leaves_the_rest_and_says_so() -> None:
    doc = parse(tiff(3), "r.tif", ParseOptions(ocr_max_seconds=0.001))
    assert [s.page for s in doc.sections] == [1]
    assert "read 1 of 3 pages; stopped at the 0.001-second OCR limit (ingest.ocr_max_seconds)" in doc.metadata["ocr"]


def test_pixel_limit_applies_to_rendered_pdf_pages() -> None:
    # a PDF page is rendered scaled down to stay under the limit, never refused or decoded larger
    seen: list[tuple[int, int]] = []
    real = ocr.read

    def spy(image):
        seen.append(image.size)
        return real(image)

    data = scanned_pdf([page(["The safe is opened at eight."], (1654, 1000))])
    try:
        ocr.read = spy
        doc = parse(data, "s.pdf", ParseOptions(max_image_pixels=600_000))
    finally:
        ocr.read = real
    assert seen and seen[0][0] * seen[0][1] <= 600_000
    assert "safe" in doc.text


def test_deferred_parse_runs_no_ocr(monkeypatch) -> None:
    monkeypatch.setattr(ocr, "read", lambda _image: pytest.fail("OCR ran in the text lane"))
    for data, name, pages in [(tiff(3), "r.tif", 3), (scanned_pdf([page(["a"]), page(["b"])]), "s.pdf", 2)]:
        with pytest.raises(OcrDeferred) as err:
            parse(data, name, ParseOptions(defer_ocr=True, ocr_max_pages=5))
        assert err.value.pages == pages
    assert "Crazy" in parse((Path(__file__).parents[1] / "fixtures" / "docs" / "pypdf" / "crazyones.pdf")
                            .read_bytes(), "c.pdf", ParseOptions(defer_ocr=True)).text


@pytest.mark.slow
def test_worker_reads_scans_beside_text_documents_with_progress(tmp_path, db_url) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-scan.tif").write_bytes(tiff(5, (1400, 700)))  # the oldest job: claimed first
    for i in range(4):
        (folder / f"note-{i}.txt").write_text(f"Branch {i} opens at nine and closes at five on weekdays.")
    (folder / "b-big.png").write_bytes(tiff(1, (1200, 500)))  # one page: under the pixel limit below
    c = Container(make_settings(tmp_path / "data", db_url,
                                ingest={"claim_batch": 8, "ocr_max_pages": 4, "max_image_pixels": 2_000_000}))
    init(c, "admin", "admin-password-1")
    try:
        list(submit_paths(c, [folder], "archive"))
        with c.sessions() as s:
            ids = {Path(v.source).name: v.id for v in documents.list_documents(s)}
        finished: list[str] = []
        names = {v: k for k, v in ids.items()}
        seen: list[tuple[str, str | None]] = []
        stop = threading.Event()

        def watch() -> None:  # what `kb docs list` would show while the worker runs
            while not stop.is_set():
                with c.sessions() as s:
                    v = documents.get_document(s, ids["a-scan.tif"])
                seen.append((v.status, v.reason))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            Worker(c).run_once(on_done=lambda doc_id, _status: finished.append(names[doc_id]))
        finally:
            stop.set()
            watcher.join()
        with c.sessions() as s:
            views = {Path(v.source).name: v for v in documents.list_documents(s)}
        assert all(v.status == DocStatus.indexed for v in views.values()), {k: (v.status, v.reason)
                                                                            for k, v in views.items()}
        # the text notes did not wait for the five-page scan claimed before them
        assert finished.index("a-scan.tif") > max(finished.index(f"note-{i}.txt") for i in range(4))
        assert sorted(finished) == sorted(ids)
        progress = [r for st, r in seen if st == DocStatus.processing and r and r.startswith("OCR: ")]
        assert "OCR: 0 of 4 pages read" in progress[:3] or progress[0].endswith("of 4 pages read"), seen
        assert any(r in progress for r in ("OCR: 1 of 4 pages read", "OCR: 2 of 4 pages read",
                                           "OCR: 3 of 4 pages read")), seen
        # the page limit came from settings, and the final reason says where it stopped
        assert "read 4 of 5 pages; stopped at the 4-page OCR limit" in views["a-scan.tif"].reason
    finally:
        c.engine.dispose()


@pytest.mark.slow
def test_worker_applies_the_pixel_limit_from_settings(tmp_path, db_url) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "huge.tif").write_bytes(tiff(1, (2000, 1200)))  # 2.4 MP
    c = Container(make_settings(tmp_path / "data", db_url, ingest={"max_image_pixels": 2_000_000}))
    init(c, "admin", "admin-password-1")
    try:
        list(submit_paths(c, [folder], "archive"))
        Worker(c).run_once()
        with c.sessions() as s:
            (view,) = documents.list_documents(s)
        assert view.status == DocStatus.too_large and "over the 2 MP limit (ingest.max_image_pixels)" in view.reason
    finally:
        c.engine.dispose()
