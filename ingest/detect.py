"""Tell a file's format from its bytes, and turn text bytes into ``str`` without mojibake.

Content decides first (magic bytes, zip entries, OLE2 stream names, header sniffing) because uploaded
names lie: a ``.doc`` that is really a ``.docx``, an e-mail saved as ``.txt``. The extension is only a
tie-breaker for plain-text formats, which have no magic.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import PurePath

# Format names shared with ingest.parsers (the registry keys).
ENCRYPTED_OFFICE = "office-encrypted"  # OLE2 wrapper around a password-protected OOXML package

PDF_MAGIC = b"%PDF-"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # local file header, empty archive
OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")

_TEXT_EXTENSIONS = {
    ".md": "md",
    ".markdown": "md",
    ".csv": "csv",
    ".tsv": "csv",
    ".htm": "html",
    ".html": "html",
    ".xhtml": "html",
    ".eml": "eml",
}
_ZIP_FAMILY_EXTENSIONS = {".docx": "docx", ".xlsx": "xlsx", ".pptx": "pptx", ".odt": "odt", ".epub": "epub"}
_ODF_MIMETYPES = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/epub+zip": "epub",
}

_EMAIL_HEADERS = {
    "from", "to", "cc", "subject", "date", "message-id", "mime-version", "received", "return-path",
    "delivered-to", "reply-to", "sender", "content-type", "in-reply-to", "references", "x-mailer",
}  # fmt: skip
_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,60}):")
_HTML_START = re.compile(
    r"^(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|div|p|h[1-6]|table|span|meta|"
    r"title|script|style|link|section|article|ul|ol|form|br|a|img)[\s/>]",
    re.IGNORECASE | re.DOTALL,
)
_HTML_ANYWHERE = re.compile(r"<(?:html|body)[\s>]", re.IGNORECASE)


def detect_format(data: bytes, filename: str) -> str | None:
    """Return a format name (``pdf``, ``docx``, ``eml``, ...), ``zip`` for a plain archive, or None."""
    ext = PurePath(filename).suffix.lower()
    head = data[:1024]
    if PDF_MAGIC in head:  # the spec tolerates junk before the header
        return "pdf"
    if data.startswith(ZIP_MAGICS):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return classify_zip(zf)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            # A broken package: keep the family its name claims so the parser reports it as corrupt.
            return _ZIP_FAMILY_EXTENSIONS.get(ext, "zip")
    if data.startswith(OLE2_MAGIC):
        return _classify_ole(data)
    image = detect_image(data)
    if image:
        return image
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{\\rtf"):
        return "rtf"
    if not looks_like_text(data):
        return None
    text = decode_text(data[:8192]).lstrip("\ufeff \t\r\n")
    if text.startswith("{\\rtf"):
        return "rtf"
    if _looks_like_email(text):
        return "eml"
    if _HTML_START.match(text) or (ext not in _TEXT_EXTENSIONS and _HTML_ANYWHERE.search(text[:2048])):
        return "html"
    return _TEXT_EXTENSIONS.get(ext, "txt")


def detect_image(data: bytes) -> str | None:
    """Raster image formats kb reads with OCR, by their signatures."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    # BMP: "BM", then a DIB header whose size field is one of the few that exist
    if data.startswith(b"BM") and len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    return None


_BMP_DIB_SIZES = {12, 40, 52, 56, 64, 108, 124}


def classify_zip(zf: zipfile.ZipFile) -> str:
    """Tell an OOXML / ODF / EPUB package from a plain zip archive by its entries."""
    names = set(zf.namelist())
    if "mimetype" in names:
        try:
            mimetype = zf.read("mimetype")[:100].decode("ascii", "replace").strip()
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError):
            mimetype = ""
        if mimetype in _ODF_MIMETYPES:
            return _ODF_MIMETYPES[mimetype]
    if "[Content_Types].xml" in names or any(n.startswith(("word/", "xl/", "ppt/")) for n in names):
        if "word/document.xml" in names or any(n.startswith("word/") for n in names):
            return "docx"
        if "xl/workbook.xml" in names or any(n.startswith("xl/") for n in names):
            return "xlsx"
        if "ppt/presentation.xml" in names or any(n.startswith("ppt/") for n in names):
            return "pptx"
    if "META-INF/container.xml" in names:
        return "epub"
    return "zip"


def _classify_ole(data: bytes) -> str | None:
    """OLE2 compound files: the stream names say which Office program wrote it."""
    import olefile  # installed with extract-msg; imported here to keep detection cheap for other formats

    try:
        ole = olefile.OleFileIO(data)
    except Exception:  # olefile raises OSError, struct.error, IndexError... on damaged files
        return None
    try:
        streams = {"/".join(entry).lower() for entry in ole.listdir(streams=True, storages=True)}
    finally:
        ole.close()
    if "encryptedpackage" in streams:
        return ENCRYPTED_OFFICE
    if "worddocument" in streams:
        return "doc"
    if "workbook" in streams or "book" in streams:
        return "xls"
    if "powerpoint document" in streams:
        return "ppt"
    if any(s.startswith("__substg1.0_") for s in streams) or "__properties_version1.0" in streams:
        return "msg"
    return None


def _looks_like_email(text: str) -> bool:
    """RFC 822: the file opens with a header block that names at least two well-known headers."""
    known = 0
    for line in text.splitlines()[:60]:
        if not line.strip():
            break
        if line[0] in " \t":  # folded continuation of the previous header
            continue
        m = _HEADER_LINE.match(line)
        if not m:
            return False
        if m.group(1).lower() in _EMAIL_HEADERS:
            known += 1
    return known >= 2


def looks_like_text(data: bytes) -> bool:
    """True when the bytes are text in some encoding: no NULs (unless UTF-16/32) and few control bytes."""
    sample = data[:8192]
    if not sample:
        return True
    if _bom_encoding(sample) or _utf16_without_bom(sample):
        return True
    if b"\x00" in sample:
        return False
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls / len(sample) < 0.02


# ---------------------------------------------------------------------------------------------------
# Text decoding

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Legacy encodings kb expects in practice: Chinese (mainland and Taiwan/HK) and Western European.
_LEGACY_CANDIDATES = ["gb18030", "big5", "cp1252", "latin_1", "iso8859_15", "shift_jis", "euc_kr"]
_CJK = ("gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950", "cp936")


def _bom_encoding(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text without a BOM shows NULs in every other byte for ASCII-heavy content."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nuls, odd_nuls = even.count(0) / len(even), odd.count(0) / len(odd)
    if odd_nuls > 0.3 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.3 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def decode_text(data: bytes) -> str:
    """Decode text bytes: BOM, then strict UTF-8, then the best legacy encoding (CJK and Western)."""
    if not data:
        return ""
    encoding = _bom_encoding(data) or _utf16_without_bom(data)
    if encoding:
        return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A file cut mid-character (e.g. our own 8 KB sniff window) is still UTF-8.
        if exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data.decode("utf-8", errors="ignore")
    return data.decode(_guess_legacy(data), errors="replace")


def _guess_legacy(data: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data[:65536], cp_isolation=_LEGACY_CANDIDATES).best()
    guess = best.encoding if best is not None else None
    if guess is None or guess in _CJK or _cjk_share(data) > 0.2:
        cjk = _pick_cjk(data)
        if cjk:
            return cjk
    if guess in (None, "latin_1", "iso8859_1", "iso8859_15"):
        # cp1252 agrees with Latin-1 on letters and gives real characters (quotes, euro) for 0x80-0x9F.
        try:
            data.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            return guess or "latin_1"
    return guess


def _cjk_share(data: bytes) -> float:
    high = sum(1 for b in data[:65536] if b >= 0x81)
    return high / max(1, min(len(data), 65536))


def _pick_cjk(data: bytes) -> str | None:
    """GBK and Big5 byte ranges overlap, so both often decode; the right one yields common characters.

    Text decoded with the wrong table lands on rare ideographs and symbols outside the everyday sets
    (GB2312 for simplified, Big5 level 1 for traditional), so score each by its share of common ones.
    """
    sample = data[:65536]
    best, best_score = None, 0.0
    for encoding in ("gb18030", "big5"):
        try:
            text = sample.decode(encoding)
        except UnicodeDecodeError as exc:
            if exc.start < len(sample) - 2:  # not merely a character cut at the sample's end
                continue
            text = sample[: exc.start].decode(encoding)
        score = _common_cjk_share(text, _is_common_gbk if encoding == "gb18030" else _is_big5_level1)
        if score > best_score:
            best, best_score = encoding, score
    return best if best_score > 0.5 else None


def _common_cjk_share(text: str, is_common: Callable[[str], bool]) -> float:
    wide = [c for c in text if ord(c) > 0x7F]
    if not wide:
        return 0.0
    common = 0
    for c in wide:
        if "\u4e00" <= c <= "\u9fff":
            common += is_common(c)
        elif "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef":  # CJK punctuation, full-width forms
            common += 1
    return common / len(wide)


def _is_gb2312(c: str) -> bool:
    try:
        c.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


def _is_big5_level1(c: str) -> bool:
    try:
        raw = c.encode("big5")
    except UnicodeEncodeError:
        return False
    return b"\xa4\x40" <= raw <= b"\xc6\x7e"  # frequently used characters


def _is_common_gbk(c: str) -> bool:
    # GBK carries traditional characters too, so a traditional text saved as GBK is still "common".
    return _is_gb2312(c) or _is_big5_level1(c)
