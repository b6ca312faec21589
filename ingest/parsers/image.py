"""Scans and photos (PNG, JPEG, TIFF with any number of pages, BMP, WebP) read with OCR, one section per page.

The image size is checked from the header before any pixel is decoded, so a decompression bomb is
refused (too_large, with the numbers) without the memory it asks for. JPEG photos are turned the way
their EXIF orientation says before OCR, which then turns any page still lying on its side upright.
"""

from __future__ import annotations

import io
import warnings

from ingest import ocr
from ingest.options import OcrDeferred, current
from ingest.parsers.base import finish, guard
from ingest.types import DocStatus, IngestError, ParsedDocument, Section

IMAGE_FORMATS = ("png", "jpeg", "tiff", "bmp", "webp")
_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "TIFF": "tiff", "BMP": "bmp", "WEBP": "webp"}  # Pillow's names


def _limit_error(width: int, height: int, limit: int, what: str = "image") -> IngestError:
    return IngestError(
        DocStatus.too_large,
        f"{what} is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the {limit / 1e6:.0f} MP "
        "limit (ingest.max_image_pixels): scale it down or raise the limit",
    )


class ImageParser:
    formats = IMAGE_FORMATS

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        from PIL import Image, ImageOps, UnidentifiedImageError

        opts = current()
        if not data.strip():
            raise IngestError(DocStatus.empty, "file is empty")
        with guard("image"), warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise IngestError(DocStatus.too_large, f"image refused as a decompression bomb ({exc})") from exc
            except UnidentifiedImageError as exc:
                raise IngestError(DocStatus.failed, "could not read this image, it looks damaged or is not an "
                                                    "image; export it again as PNG or JPEG") from exc
            fmt = _FORMATS.get(img.format or "")
            if fmt is None:
                raise IngestError(DocStatus.unsupported, f"{img.format} images are not read: save it as PNG or JPEG")
            if not opts.ocr:
                raise IngestError(DocStatus.empty, "image without text layer; OCR is off (ingest.ocr_enabled)")
            frames = getattr(img, "n_frames", 1)
            if opts.defer_ocr:
                raise OcrDeferred(min(frames, opts.ocr_max_pages))

            def load(number: int):
                img.seek(number)
                width, height = img.size
                if width * height > opts.max_image_pixels:
                    raise _limit_error(width, height, opts.max_image_pixels,
                                       "image" if frames == 1 else f"page {number + 1}")
                try:
                    frame = ImageOps.exif_transpose(img) if number == 0 else img.copy()
                    frame.load()
                except OSError as exc:  # truncated or corrupt pixel data
                    raise IngestError(DocStatus.failed, f"could not read this image, it looks damaged ({exc}); "
                                                        "export it again") from exc
                return frame

            run = ocr.read_pages([(n + 1, lambda n=n: load(n)) for n in range(frames)], max_pages=opts.ocr_max_pages,
                                 max_seconds=opts.ocr_max_seconds, progress=opts.progress)
            sections = [Section(text=text, page=number) for number, text in run.texts.items()]
        return finish_ocr(sections, fmt, pages=frames, read=run.read, stopped=run.stopped, kind="image")


def ocr_note(read: int, pages: int, stopped: str = "", text_pages: int = 0) -> str:
    """The status reason of a document OCR read: how many pages, and why any were left out."""
    note = f"OCR ({ocr.ENGINE_NAME}) read {read} of {pages} page{'s' if pages != 1 else ''}"
    if text_pages:
        note += f"; {text_pages} page{'s' if text_pages != 1 else ''} had a text layer"
    if stopped:
        note += f"; {stopped}: raise it and retry to read the rest"
    return note


def finish_ocr(sections: list[Section], fmt: str, *, pages: int, read: int, stopped: str, kind: str,
               text_pages: int = 0, title: str | None = None, metadata: dict[str, str] | None = None
               ) -> ParsedDocument:
    """``finish`` for documents OCR read: the note goes into ``metadata['ocr']`` (the worker makes it the
    status reason) and a scan without any text ends ``empty`` saying OCR found nothing."""
    note = ocr_note(read, pages, stopped, text_pages)
    meta = {"pages": str(pages), **(metadata or {})}
    if read:
        meta.update(ocr=note, ocr_pages=str(read))
    return finish(sections, fmt, title=title, metadata=meta,
                  empty_reason=f"no text found in this scanned {kind}: {note} and recognised nothing")
