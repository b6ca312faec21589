"""Scans read with OCR (RapidOCR, offline): generated Chinese/English scans, a photo, the fixtures' image-only
PDFs, limits, and the guarantee that reading never reaches for the network."""

from __future__ import annotations

import io
import json
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from app.cli import cli
from app.services import documents
from app.services.container import Container
from app.settings import NON_SETTING_VARIABLES
from ingest import ocr
from ingest.options import ParseOptions
from ingest.parsers import parse
from ingest.submit import submit_paths
from ingest.types import DocStatus, IngestError
from ingest.worker import Worker
from tests.conftest import FIXTURES, make_settings

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
ZH = ["档案馆保存着一九八七年的土地合同。", "借款人应当在每月十五日之前还款。"]
EN = ["The vault key is kept by the branch manager.", "Scanned ledgers are stored in room forty two."]


def page(lines: list[str], size: tuple[int, int] = (1654, 2339), font_px: int = 40) -> Image.Image:
    """A white A4 page at 200 dpi with the lines typeset on it, like a clean scan."""
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, font_px)
    for i, line in enumerate(lines):
        draw.text((150, 200 + i * int(font_px * 2.2)), line, font=font, fill=0)
    return img


def photo(lines: list[str]) -> bytes:
    """A phone photo of a page: grey paper, slight tilt, blur, lying on its side, JPEG quality 70."""
    img = page(lines, (1400, 1000), 44).point(lambda v: 60 + v * 0.7)
    img = img.rotate(2.5, fillcolor=235, resample=Image.BICUBIC).filter(ImageFilter.GaussianBlur(1.0))
    img = img.rotate(90, expand=True)
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=70)
    return out.getvalue()


def scanned_pdf(pages: list[Image.Image]) -> bytes:
    out = io.BytesIO()
    pages[0].save(out, "PDF", resolution=200, save_all=True, append_images=pages[1:])
    return out.getvalue()


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scans") / "scans"
    folder.mkdir()
    (folder / "contract.pdf").write_bytes(scanned_pdf([page(ZH), page(EN)]))
    (folder / "photo.jpg").write_bytes(photo(["Meeting room B opens at nine.", "会议室钥匙在前台。"]))
    shutil.copy(FIXTURES / "docs" / "unstructured" / "pdf" / "single_table.pdf", folder)
    shutil.copy(FIXTURES / "ocr" / "table-multi-row-column-cells.pdf", folder)
    big = io.BytesIO()
    Image.new("L", (2500, 2000), 255).save(big, "PNG")  # 5 MP: over the 4 MP limit set below
    (folder / "huge.png").write_bytes(big.getvalue())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"garbage" * 50)
    (folder / "note.txt").write_text("A text file is never rendered or read with OCR.")
    return folder


def test_parser_reads_generated_scan_with_pages_in_both_languages(scans) -> None:
    doc = parse((scans / "contract.pdf").read_bytes(), "contract.pdf")
    assert [s.page for s in doc.sections] == [1, 2]
    assert ZH[0].rstrip("。") in doc.sections[0].text and EN[0].rstrip(".") in doc.sections[1].text
    assert doc.metadata["ocr_pages"] == "2" and "read 2 of 2 pages" in doc.metadata["ocr"]


def test_mixed_pdf_reads_only_the_page_without_text(tmp_path) -> None:
    import pypdfium2 as pdfium

    scan = pdfium.PdfDocument(scanned_pdf([page(EN)]))
    text = pdfium.PdfDocument((FIXTURES / "docs" / "pypdf" / "crazyones.pdf").read_bytes())
    text.import_pages(scan)
    out = io.BytesIO()
    text.save(out)
    doc = parse(out.getvalue(), "mixed.pdf")
    assert "The Crazy Ones" in doc.sections[0].text and "vault key" in doc.sections[1].text
    assert "read 1 of 1 page; 1 page had a text layer" in doc.metadata["ocr"]


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_pages_are_turned_upright(angle) -> None:
    result = ocr.read(page(EN, (1654, 1000)).rotate(angle, expand=True))
    assert "vault key is kept by the branch manager" in result.text
    assert result.angle == (360 - angle) % 360


def test_multipage_tiff_has_one_section_per_page() -> None:
    out = io.BytesIO()
    first, second = page(["Page one of the fax."], (1200, 600)), page(["Page two of the fax."], (1200, 600))
    first.save(out, "TIFF", save_all=True, append_images=[second])
    doc = parse(out.getvalue(), "fax.tif")
    assert doc.format == "tiff" and [s.page for s in doc.sections] == [1, 2]
    assert "two" in doc.sections[1].text


def test_limits_pages_and_pixels() -> None:
    out = io.BytesIO()
    pages = [page([f"Section {n} of the report."], (1200, 500)) for n in (1, 2, 3)]
    pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:])
    doc = parse(out.getvalue(), "r.tif", ParseOptions(ocr_max_pages=2))
    assert len(doc.sections) == 2 and "2-page OCR limit (ingest.ocr_max_pages)" in doc.metadata["ocr"]
    with pytest.raises(IngestError) as err:
        parse(out.getvalue(), "r.tif", ParseOptions(max_image_pixels=500_000))
    assert err.value.status == DocStatus.too_large and "ingest.max_image_pixels" in err.value.reason


def test_ocr_never_reaches_the_network(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise OSError("network disabled in test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(ocr, "_ENGINE", None)  # load the models again, offline
    assert "vault key" in ocr.read(page(EN, (1654, 800))).text
    models = Path(__import__("rapidocr_onnxruntime").__file__).parent / "models"
    assert {p.name for p in models.glob("*.onnx")} >= {"ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx",
                                                        "ch_ppocr_mobile_v2.0_cls_infer.onnx"}


@pytest.mark.slow
def test_scans_index_and_are_found_by_kb_search(scans, tmp_path, db_url, monkeypatch) -> None:
    from app.services.setup import init

    c = Container(make_settings(tmp_path / "data", db_url, ingest={"max_image_pixels": 4_000_000,
                                                                 "chunk_tokens": 40, "chunk_overlap": 0}))
    init(c, "admin", "admin-password-1")
    try:
        list(submit_paths(c, [scans], "archive"))
        Worker(c).run_once()
        with c.sessions() as s:
            views = {Path(v.source).name: v for v in documents.list_documents(s)}
        status = {name: (v.status, v.reason) for name, v in views.items()}
        for name in ("contract.pdf", "photo.jpg", "single_table.pdf", "table-multi-row-column-cells.pdf"):
            assert views[name].status == DocStatus.indexed, status
            assert "OCR" in views[name].reason and views[name].n_chunks > 0, status
        assert "read 2 of 2 pages" in views["contract.pdf"].reason
        assert views["huge.png"].status == DocStatus.too_large and "megapixels" in views["huge.png"].reason
        assert views["broken.png"].status == DocStatus.failed and views["broken.png"].reason
        assert views["note.txt"].status == DocStatus.indexed and views["note.txt"].reason is None

        for key in [k for k in __import__("os").environ if k.startswith("KB_") and k not in NON_SETTING_VARIABLES]:
            monkeypatch.delenv(key)
        env = {"KB_DATA_DIR": str(c.settings.data_dir), "KB_DATABASE__URL": c.settings.database_url,
               "KB_INGEST__MAX_IMAGE_PIXELS": "4000000", "KB_INGEST__CHUNK_TOKENS": "40",
               "KB_INGEST__CHUNK_OVERLAP": "0"}

        def kb_search(query: str) -> list[dict]:
            result = CliRunner().invoke(cli, ["search", query, "--json", "--k", "3"], env=env)
            assert result.exit_code == 0, result.output
            return json.loads(result.output)

        for query, name, text, pg in [("借款人每月十五日之前还款", "contract.pdf", "十五日", 1),
                                      ("who keeps the vault key", "contract.pdf", "vault key", 2),
                                      ("when does meeting room B open", "photo.jpg", "Meeting room B", 1),
                                      ("Chipper tables mean", "single_table.pdf", "Chipper", 1)]:
            hits = kb_search(query)
            found = [h for h in hits if Path(h["source"]).name == name and text in h["text"]]
            assert found and found[0]["page"] == pg, hits
    finally:
        c.engine.dispose()
