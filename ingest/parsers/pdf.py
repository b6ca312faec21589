"""PDF text layer, one section per page, with pypdfium2.

Why pypdfium2: it wraps PDFium, the engine in Chrome, so it opens damaged and unusual PDFs that
pure-Python readers give up on, extracts text several times faster than pdfminer/pypdf, decrypts
AES/RC4 files opened with an empty user password, and is Apache-2.0/BSD licensed. PyMuPDF would be
as good but is AGPL, which a private on-premises product cannot ship.

No OCR here: a PDF without a text layer is reported as empty so an admin knows to OCR it.
"""

from __future__ import annotations

import threading

from ingest.parsers.base import finish, guard
from ingest.types import DocStatus, IngestError, ParsedDocument, Section

# PDFium keeps global state and is not thread-safe; parsers may run in a thread pool.
_PDFIUM_LOCK = threading.Lock()
_ERR_PASSWORD = 4
_ERR_SECURITY = 5


class PdfParser:
    formats = ("pdf",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        import pypdfium2 as pdfium

        with guard("pdf"), _PDFIUM_LOCK:
            try:
                doc = pdfium.PdfDocument(data)
            except pdfium.PdfiumError as exc:
                code = getattr(exc, "err_code", None)
                if code in (_ERR_PASSWORD, _ERR_SECURITY):
                    raise IngestError(
                        DocStatus.needs_password,
                        "PDF is password-protected: remove the password (print to PDF or save without "
                        "encryption) and upload it again",
                    ) from exc
                raise IngestError(
                    DocStatus.failed, f"PDF is damaged and cannot be opened ({exc}); re-export or repair it"
                ) from exc
            try:
                sections = []
                for number in range(len(doc)):
                    page = doc[number]
                    textpage = page.get_textpage()
                    try:
                        text = textpage.get_text_bounded()
                    finally:
                        textpage.close()
                        page.close()
                    sections.append(Section(text=text, page=number + 1))
                meta = {k: v for k, v in doc.get_metadata_dict().items() if v and k in ("Author", "Title")}
                metadata = {"pages": str(len(doc)), **{k.lower(): v for k, v in meta.items()}}
            finally:
                doc.close()
        return finish(
            sections,
            "pdf",
            title=meta.get("Title"),
            metadata=metadata,
            empty_reason="no text layer: scanned/image-only PDF, needs OCR",
        )
