"""Legacy binary Office (Word 97-2003 .doc, PowerPoint 97-2003 .ppt), best effort, and encrypted OOXML.

No library reads these in Python under a permissive licence (antiword/catdoc are GPL programs,
LibreOffice is a 300 MB dependency), so text is pulled straight from the OLE2 streams with olefile
(BSD): the .doc piece table ([MS-DOC] 2.8.35) and the .ppt text atoms ([MS-PPT] 2.9.x). Formatting,
embedded objects and fast-saved files are out of scope; when nothing comes out the user is told to
save the file in the modern format.
"""

from __future__ import annotations

import re
import struct

from ingest.options import current
from ingest.parsers.base import finish, short
from ingest.types import DocStatus, IngestError, ParsedDocument, Section

_SAVE_AS = {
    "doc": "legacy .doc: could not extract its text; open it in Word or LibreOffice and save as .docx",
    "ppt": "legacy .ppt: could not extract its text; open it in PowerPoint or LibreOffice and save as .pptx",
}
_FIELD_CODE = re.compile(r"\x13[^\x13\x14\x15]*\x14([^\x13\x14\x15]*)\x15")
_FIELD_NO_RESULT = re.compile(r"\x13[^\x13\x14\x15]*\x15")


def _open(data: bytes):
    import olefile

    return olefile.OleFileIO(data)


class EncryptedOfficeParser:
    """An OOXML file with a password is an OLE2 box holding an EncryptedPackage stream."""

    formats = ("office-encrypted",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        """With a password for this parse (``ingest.options``), decrypt in memory with msoffcrypto-tool and
        parse the package inside (its format, e.g. ``docx``, is the document's); without one, refuse."""
        password = current().password
        if password is None:
            raise IngestError(
                DocStatus.needs_password,
                "Office file is password-protected: retry it with its password (kb docs retry ID "
                "--password-stdin, or the password field on the Documents page)",
            )
        import io

        import msoffcrypto

        from ingest.parsers import parse_with  # the registry imports this module

        out = io.BytesIO()
        try:
            office = msoffcrypto.OfficeFile(io.BytesIO(data))
            office.load_key(password=password)
            office.decrypt(out)
        except (msoffcrypto.exceptions.InvalidKeyError, msoffcrypto.exceptions.DecryptionError) as exc:
            raise IngestError(DocStatus.needs_password, "Office file is password-protected and the password "
                                                        "given does not open it: retry with the right password"
                              ) from exc
        except Exception as exc:  # a damaged container
            raise IngestError(DocStatus.failed, f"could not decrypt this Office file ({short(exc, 80)})") from exc
        return parse_with(None, out.getvalue(), filename)


class DocParser:
    formats = ("doc",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        try:
            text = _doc_text(data)
        except IngestError:
            raise
        except Exception as exc:  # malformed streams: struct errors, index errors, olefile errors
            raise IngestError(DocStatus.unsupported, f"{_SAVE_AS['doc']} ({short(exc, 80)})") from exc
        return finish([Section(text=text)], "doc", empty_reason=_SAVE_AS["doc"])


def _doc_text(data: bytes) -> str:
    ole = _open(data)
    try:
        word = ole.openstream("WordDocument").read()
        (ident, flags) = struct.unpack_from("<H8xH", word, 0)
        if ident != 0xA5EC:
            raise IngestError(DocStatus.unsupported, _SAVE_AS["doc"])
        if flags & 0x0100:  # fEncrypted
            raise IngestError(
                DocStatus.needs_password,
                "Word document is password-protected: remove the password in Word and upload it again",
            )
        table_name = "1Table" if flags & 0x0200 else "0Table"
        table = ole.openstream(table_name).read()
    finally:
        ole.close()
    # FIB: 32-byte base, then csw/fibRgW, cslw/fibRgLw, cbRgFcLcb/fibRgFcLcb; fcClx is pair 33.
    csw = struct.unpack_from("<H", word, 32)[0]
    pos = 34 + csw * 2
    cslw = struct.unpack_from("<H", word, pos)[0]
    pos += 2 + cslw * 4 + 2
    fc_clx, lcb_clx = struct.unpack_from("<II", word, pos + 33 * 8)
    clx = table[fc_clx : fc_clx + lcb_clx]
    i = 0
    while i < len(clx) and clx[i] == 0x01:  # skip Prc (property modifiers)
        i += 3 + struct.unpack_from("<h", clx, i + 1)[0]
    if i >= len(clx) or clx[i] != 0x02:
        raise IngestError(DocStatus.unsupported, _SAVE_AS["doc"])
    lcb = struct.unpack_from("<I", clx, i + 1)[0]
    plc = clx[i + 5 : i + 5 + lcb]
    pieces = (len(plc) - 4) // 12
    cps = struct.unpack_from(f"<{pieces + 1}I", plc, 0)
    out = []
    for n in range(pieces):
        fc_raw = struct.unpack_from("<I", plc, (pieces + 1) * 4 + n * 8 + 2)[0]
        length = cps[n + 1] - cps[n]
        if fc_raw & 0x40000000:  # compressed: 8-bit code page text at fc/2
            start = (fc_raw & 0x3FFFFFFF) // 2
            out.append(word[start : start + length].decode("cp1252", "replace"))
        else:
            start = fc_raw & 0x3FFFFFFF
            out.append(word[start : start + 2 * length].decode("utf-16-le", "replace"))
    text = "".join(out)
    text = _FIELD_NO_RESULT.sub("", _FIELD_CODE.sub(r"\1", text))
    return text.translate({0x07: "\t", 0x0B: "\n", 0x0D: "\n", 0x1E: "-", 0x1F: ""})


class PptParser:
    formats = ("ppt",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        try:
            slides = _ppt_slides(data)
        except IngestError:
            raise
        except Exception as exc:
            raise IngestError(DocStatus.unsupported, f"{_SAVE_AS['ppt']} ({short(exc, 80)})") from exc
        sections = [Section(text="\n".join(lines), page=number) for number, lines in slides]
        return finish(sections, "ppt", empty_reason=_SAVE_AS["ppt"])


_SLIDE_LIST = 0x0FF0
_SLIDE_PERSIST = 0x03F3
_TEXT_CHARS = 0x0FA0
_TEXT_BYTES = 0x0FA8
_MAIN_MASTER = 0x03F8


def _ppt_slides(data: bytes) -> list[tuple[int | None, list[str]]]:
    """Text atoms grouped by slide: SlideListWithText lists each slide's text after its persist atom."""
    ole = _open(data)
    try:
        if ole.exists("EncryptedSummary"):
            raise IngestError(
                DocStatus.needs_password,
                "PowerPoint file is password-protected: remove the password and upload it again",
            )
        stream = ole.openstream("PowerPoint Document").read()
    finally:
        ole.close()
    slides: dict[int | None, list[str]] = {}
    seen: set[str] = set()
    slide_no = 0

    def walk(start: int, end: int, list_instance: int | None) -> None:
        nonlocal slide_no
        pos = start
        while pos + 8 <= end:
            ver_inst, rec_type, rec_len = struct.unpack_from("<HHI", stream, pos)
            body, pos = pos + 8, pos + 8 + rec_len
            if pos > end:
                break
            if ver_inst & 0x000F == 0x000F and rec_type == _MAIN_MASTER:
                continue  # layout placeholders ("Click to edit the title text format")
            if ver_inst & 0x000F == 0x000F:  # container
                instance = ver_inst >> 4 if rec_type == _SLIDE_LIST else list_instance
                walk(body, pos, instance)
            elif rec_type == _SLIDE_PERSIST and list_instance == 0:
                slide_no += 1
            elif rec_type in (_TEXT_CHARS, _TEXT_BYTES):
                raw = stream[body:pos]
                text = raw.decode("utf-16-le" if rec_type == _TEXT_CHARS else "cp1252", "replace")
                text = text.replace("\r", "\n").replace("\x0b", "\n").strip()
                if not text or text in seen:  # the same text is stored in the slide list and its drawing
                    continue
                seen.add(text)
                key = slide_no if list_instance == 0 and slide_no else None
                slides.setdefault(key, []).append(text)

    walk(0, len(stream), None)
    ordered = sorted((k, v) for k, v in slides.items() if k is not None)
    return [*ordered, *([(None, slides[None])] if None in slides else [])]
