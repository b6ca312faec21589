"""EPUB read directly with zipfile + lxml: the OPF spine's XHTML files in reading order, one section each.

Why not ebooklib: it is AGPL-3.0, which an on-premises product should not ship, and all an indexer
needs from an EPUB is the container -> OPF -> spine walk, which is a few lines. Chapters are XHTML
and are rendered with the same code as web pages. The XML parser resolves no entities and fetches
nothing (no XXE).
"""

from __future__ import annotations

import io
import posixpath
import zipfile

from ingest.parsers.base import finish, guard
from ingest.parsers.web import html_sections
from ingest.types import DocStatus, IngestError, ParsedDocument, Section

_CONTAINER = "META-INF/container.xml"
_NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
}
_MAX_CHAPTER_BYTES = 50 * 1024 * 1024


def _xml(raw: bytes):
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    return etree.fromstring(raw, parser=parser)


class EpubParser:
    formats = ("epub",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        with guard("epub"), zipfile.ZipFile(io.BytesIO(data)) as zf:
            if any(info.flag_bits & 0x1 for info in zf.infolist()):
                raise IngestError(DocStatus.needs_password, "EPUB is encrypted: upload an unencrypted copy")
            container = _xml(zf.read(_CONTAINER))
            opf_path = container.xpath("string(//c:rootfile/@full-path)", namespaces=_NS)
            opf = _xml(zf.read(opf_path))
            base = posixpath.dirname(opf_path)
            manifest = {
                item.get("id"): (item.get("href"), item.get("media-type", ""))
                for item in opf.xpath("//opf:manifest/opf:item", namespaces=_NS)
            }
            sections: list[Section] = []
            for ref in opf.xpath("//opf:spine/opf:itemref/@idref", namespaces=_NS):
                href, media_type = manifest.get(ref, (None, ""))
                if not href or "html" not in media_type:
                    continue
                name = posixpath.normpath(posixpath.join(base, href.split("#")[0]))
                info = zf.getinfo(name)
                if info.file_size > _MAX_CHAPTER_BYTES:
                    raise IngestError(DocStatus.too_large, f"EPUB chapter {name} is larger than 50 MB")
                chapter_title, parts = html_sections(zf.read(info).decode("utf-8", "replace"))
                heading = next((p.heading for p in parts if p.heading), None) or chapter_title
                sections.append(Section(text="\n\n".join(p.text for p in parts), heading=heading))
            title = opf.xpath("string(//dc:title)", namespaces=_NS).strip() or None
        return finish(sections, "epub", title=title)
