"""CSV/TSV with the standard library: sniffed delimiter, our encoding detection, header-aware rows.

Why stdlib ``csv``: it handles quoting and embedded newlines correctly and needs nothing else;
pandas would add a heavy dependency for no gain in text extraction.
"""

from __future__ import annotations

import csv
import io

from ingest.detect import decode_text
from ingest.parsers.base import finish, guard
from ingest.parsers.tabular import rows_to_sections
from ingest.types import ParsedDocument

csv.field_size_limit(10 * 1024 * 1024)  # long free-text cells are normal in exports


class CsvParser:
    formats = ("csv",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        with guard("csv"):
            text = decode_text(data)
            sample = text[:20000]
            try:
                dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
            except csv.Error:
                dialect = csv.excel_tab if filename.lower().endswith(".tsv") else csv.excel
            rows = csv.reader(io.StringIO(text, newline=""), dialect)
            sections = rows_to_sections(rows)
        return finish(sections, "csv")
