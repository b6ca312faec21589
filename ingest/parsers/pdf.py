"""PDF text layer, one section per page, with pypdfium2.

Why pypdfium2: it wraps PDFium, the engine in Chrome, so it opens damaged and unusual PDFs that
pure-Python readers give up on, extracts text several times faster than pdfminer/pypdf, decrypts
AES/RC4 files opened with an empty user password, and is Apache-2.0/BSD licensed. PyMuPDF would be
as good but is AGPL, which a private on-premises product cannot ship.

Tables in the text layer become Markdown rows (ingest.parsers.pdf_tables), which the chunker keeps
under their header. Pages without a text layer that hold an image (scans) are rendered at ``ingest.ocr_dpi`` and read
with OCR (ingest.ocr); pages with text are never rendered, so text PDFs cost what they did. A password
given for this one parse (``ingest.options``) opens an encrypted file.
"""

from __future__ import annotations

import logging
import threading

from ingest.options import OcrDeferred, current
from ingest.parsers.base import finish, guard
from ingest.types import DocStatus, IngestError, ParsedDocument, Section

log = logging.getLogger(__name__)

MIN_TEXT_CHARS = 10  # a page with fewer non-blank characters than this counts as having no text layer

# PDFium keeps global state and is not thread-safe; parsers may run in a thread pool.
_PDFIUM_LOCK = threading.Lock()
_ERR_PASSWORD = 4
_ERR_SECURITY = 5


class PdfParser:
    formats = ("pdf",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        import pypdfium2 as pdfium

        with guard("pdf"), _PDFIUM_LOCK:
            opts = current()
            try:
                doc = pdfium.PdfDocument(data, password=opts.password)
            except pdfium.PdfiumError as exc:
                code = getattr(exc, "err_code", None)
                if code in (_ERR_PASSWORD, _ERR_SECURITY):
                    if opts.password is not None:
                        raise IngestError(DocStatus.needs_password,
                                          "PDF is password-protected and the password given does not open it: "
                                          "retry with the right password") from None
                    raise IngestError(
                        DocStatus.needs_password,
                        "PDF is password-protected: retry it with its password (kb docs retry ID "
                        "--password-stdin, or the password field on the Documents page)",
                    ) from exc
                raise IngestError(
                    DocStatus.failed, f"PDF is damaged and cannot be opened ({exc}); re-export or repair it"
                ) from exc
            try:
                sections, scans, tables = [], [], 0
                for number in range(len(doc)):
                    page = doc[number]
                    textpage = page.get_textpage()
                    try:
                        text = textpage.get_text_bounded()
                        if len("".join(text.split())) < MIN_TEXT_CHARS:
                            if _has_image(page):
                                scans.append(number)
                        else:
                            text, found = _with_tables(textpage, text, page.get_width())
                            tables += found
                    finally:
                        textpage.close()
                        page.close()
                    sections.append(Section(text=text, page=number + 1))
                meta = {k: v for k, v in doc.get_metadata_dict().items() if v and k in ("Author", "Title")}
                metadata = {"pages": str(len(doc)), **{k.lower(): v for k, v in meta.items()}}
                if tables:
                    metadata["tables"] = str(tables)
                n_pages = len(doc)
            except BaseException:
                doc.close()
                raise
        try:
            if scans and opts.ocr:
                if opts.defer_ocr:
                    raise OcrDeferred(min(len(scans), opts.ocr_max_pages))
                return _with_ocr(doc, sections, scans, n_pages, meta, metadata, opts)
        finally:
            with _PDFIUM_LOCK:
                doc.close()
        reason = "no text layer: scanned/image-only PDF" + ("; OCR is off (ingest.ocr_enabled)" if scans else "")
        return finish(sections, "pdf", title=meta.get("Title"), metadata=metadata, empty_reason=reason)


def _with_tables(textpage, text: str, width: float) -> tuple[str, int]:
    """The page text with its tables as Markdown rows (ingest.parsers.pdf_tables), and how many.
    The finder is a heuristic over character boxes: if it trips on an odd page, the page keeps
    PDFium's plain text rather than failing the document."""
    from ingest.parsers import pdf_tables

    try:
        found = pdf_tables.page_text(textpage, width)
    except Exception:
        log.warning("table finder failed on a page; keeping its plain text", exc_info=True)
        return text, 0
    return found if found is not None else (text, 0)


def _has_image(page) -> bool:
    import pypdfium2.raw as pdfium_c

    return next(iter(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2)), None) is not None


def _render(doc, number: int, opts):
    """Page ``number`` as a PIL image at ``ocr_dpi``, scaled down to stay under ``max_image_pixels``."""
    with _PDFIUM_LOCK:
        page = doc[number]
        try:
            w, h = page.get_size()  # points (1/72 inch)
            scale = opts.ocr_dpi / 72
            if w * h * scale * scale > opts.max_image_pixels:
                # PDFium rounds the bitmap's sides up: leave a pixel each way so it stays under the limit
                scale = (opts.max_image_pixels / (w * h)) ** 0.5 * min(1 - 1 / (w * scale), 1 - 1 / (h * scale))
            return page.render(scale=scale, grayscale=True).to_pil()
        finally:
            page.close()


def _with_ocr(doc, sections, scans, n_pages, meta, metadata, opts) -> ParsedDocument:
    """Read the pages without a text layer with OCR, within the page and time limits."""
    from ingest import ocr
    from ingest.parsers.image import finish_ocr

    with guard("pdf"):
        run = ocr.read_pages([(n + 1, lambda n=n: _render(doc, n, opts)) for n in scans],
                             max_pages=opts.ocr_max_pages, max_seconds=opts.ocr_max_seconds, progress=opts.progress)
    for number, text in run.texts.items():
        sections[number - 1].text = text
    text_pages = sum(1 for i, s in enumerate(sections) if i not in set(scans) and s.text.strip())
    return finish_ocr(sections, "pdf", pages=len(scans), read=run.read, stopped=run.stopped, kind="PDF",
                      text_pages=text_pages, title=meta.get("Title"), metadata={**metadata, "pages": str(n_pages)})
