"""E-mail: EML with the standard library, Outlook MSG with extract-msg; attachments parsed one level deep.

Why stdlib ``email``: with ``policy.default`` it decodes RFC 2047 headers, MIME parts and charsets
and records broken input as defects instead of failing. Why extract-msg: the only maintained reader
of Outlook's OLE2 ``.msg`` format in Python (note: GPL-3.0 licensed, not AGPL; it runs in-process).

The indexed text is a header block (From/To/Cc/Subject/Date) plus the body (plain text preferred,
else HTML rendered to text), then each attachment that parses to text as its own section.
Encrypted mail (PGP/S-MIME) cannot be read without the recipient's key -> needs_password.
"""

from __future__ import annotations

import email
import logging
from email import policy
from email.message import EmailMessage

from ingest.detect import decode_text, detect_format
from ingest.options import OcrDeferred
from ingest.parsers.base import finish, guard
from ingest.parsers.web import html_sections
from ingest.types import DocStatus, IngestError, ParsedDocument, Section

log = logging.getLogger(__name__)

_ENCRYPTED_TYPES = {"multipart/encrypted", "application/pgp-encrypted", "application/pkcs7-mime",
                    "application/x-pkcs7-mime"}  # fmt: skip
_ENCRYPTED_REASON = (
    "e-mail is encrypted (PGP or S/MIME): open it in the recipient's mail client, save the decrypted "
    "message and upload that"
)


def _header_block(fields: list[tuple[str, object]]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in fields if value not in (None, ""))


def _html_to_text(html: str) -> str:
    _title, sections = html_sections(html)
    return "\n\n".join(s.text for s in sections)


def _attachment_sections(attachments: list[tuple[str, bytes]], nested: bool) -> tuple[list[Section], list[str]]:
    """Parse each attachment with the registry; e-mails inside e-mails do not open their own attachments."""
    from ingest.parsers import parse_with

    sections, skipped = [], []
    for name, payload in attachments:
        if not payload:
            continue
        fmt = detect_format(payload, name)
        if nested or fmt is None:
            skipped.append(name)
            continue
        nested_mail = {"eml": EmlParser, "msg": MsgParser}.get(fmt)
        try:
            doc = parse_with(nested_mail(attachments=False) if nested_mail else None, payload, name)
        except OcrDeferred:  # a scanned attachment: the whole message goes to the OCR lane
            raise
        except IngestError as exc:
            log.debug("attachment %s not indexed: %s", name, exc.reason)
            skipped.append(name)
            continue
        sections.append(Section(text=doc.text, heading=f"Attachment: {name}"))
    return sections, skipped


class EmlParser:
    formats = ("eml",)

    def __init__(self, attachments: bool = True):
        self.attachments = attachments

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        with guard("eml"):
            if data.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")) or b"\x00" in data[:200]:
                message = email.message_from_string(decode_text(data), policy=policy.default)
            else:
                message = email.message_from_bytes(data, policy=policy.default)
            assert isinstance(message, EmailMessage)
            if message.get_content_type() in _ENCRYPTED_TYPES or any(
                part.get_content_type() in _ENCRYPTED_TYPES for part in message.walk()
            ):
                raise IngestError(DocStatus.needs_password, _ENCRYPTED_REASON)
            subject = _header(message, "subject")
            fields = [(h, _header(message, h.lower())) for h in ("From", "To", "Cc", "Subject", "Date")]
            body = _eml_body(message)
            attachments = []
            for part in message.iter_attachments():
                name = part.get_filename() or f"attachment.{part.get_content_subtype()}"
                if part.get_content_type() == "message/rfc822":
                    inner = part.get_payload()
                    payload = inner[0].as_bytes() if isinstance(inner, list) and inner else b""
                    name = name if name.lower().endswith(".eml") else name + ".eml"
                else:
                    payload = part.get_payload(decode=True) or b""
                attachments.append((name, payload))
        extra, skipped = _attachment_sections(attachments, nested=not self.attachments)
        return _finish_mail("eml", fields, body, subject, extra, skipped)


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # malformed header values raise from the policy's parser
        value = message.get_all(name, failobj=[None])[0] if hasattr(message, "get_all") else None
    return " ".join(str(value).split()) if value is not None else ""


def _eml_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        if message.is_multipart() or message.get_content_maintype() != "text":
            return ""
        part = message
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError):
        raw = part.get_payload(decode=True) or b""
        content = decode_text(raw) if isinstance(raw, bytes) else str(raw)
    if isinstance(content, bytes):
        content = decode_text(content)
    return _html_to_text(content) if part.get_content_subtype() == "html" else content


def _finish_mail(
    fmt: str, fields: list[tuple[str, object]], body: str, subject: str, extra: list[Section], skipped: list[str]
) -> ParsedDocument:
    if not body.strip() and not extra and not subject:
        raise IngestError(DocStatus.empty, "e-mail has no subject, body text or readable attachment")
    sections = [Section(text=_header_block(fields) + "\n\n" + body, heading=subject or None), *extra]
    metadata = {"attachments_skipped": ", ".join(skipped)} if skipped else {}
    return finish(sections, fmt, title=subject or None, metadata=metadata)


class MsgParser:
    formats = ("msg",)

    def __init__(self, attachments: bool = True):
        self.attachments = attachments

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        import extract_msg

        logging.getLogger("extract_msg").setLevel(logging.ERROR)  # it logs every unknown property
        with guard("msg"):
            message = extract_msg.openMsg(data)
            try:
                attachments: list[tuple[str, bytes]] = []
                for att in getattr(message, "attachments", []):
                    mimetype = (getattr(att, "mimetype", None) or "").lower()
                    name = getattr(att, "longFilename", None) or getattr(att, "shortFilename", None) or "attachment"
                    if mimetype in _ENCRYPTED_TYPES or name.lower() in ("smime.p7m", "encrypted.asc"):
                        raise IngestError(DocStatus.needs_password, _ENCRYPTED_REASON)
                    payload = att.data
                    if isinstance(payload, bytes):
                        attachments.append((name, payload))
                subject = (message.subject or "").strip()
                fields = [("From", message.sender), ("To", message.to), ("Cc", message.cc),
                          ("Subject", subject), ("Date", message.date)]  # fmt: skip
                body = message.body or ""
                if not body.strip():
                    html = message.htmlBody
                    if html:
                        body = _html_to_text(html.decode("utf-8", "replace") if isinstance(html, bytes) else html)
            finally:
                message.close()
        extra, skipped = _attachment_sections(attachments, nested=not self.attachments)
        return _finish_mail("msg", fields, body, subject, extra, skipped)
