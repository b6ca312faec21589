"""PDF tables: what ingest.parsers.pdf_tables finds on the fixtures' PDFs, and what it costs.

For the fixture tables whose cells are known (checked by hand against the page), each expected header
and row is looked for as a Markdown line; for every other PDF it counts the tables found, which a
reader checks against the pages (a table found in prose is a false one). Cost: seconds of table
finding against the seconds of PDFium's plain text extraction, over every page.

    .venv/bin/python bench/pdf_tables.py [--fixtures DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.parsers import pdf_tables  # noqa: E402
from ingest.parsers.base import clean  # noqa: E402

# file -> (columns, rows including the header, a header line, a body line), read off the page by eye
KNOWN = {
    "layout-parser-paper-with-table.pdf": (4, 6, "| Dataset | Base Model1 | Large Model | Notes |",
                                           "| TableBank [18] | F | F | Table region on modern scientific and "
                                           "business document |"),
    "embedded-images-tables.pdf": (7, 7, "| Inhibitor concentration (g) | bc (V/dec) | ba (V/dec) | Ecorr (V) | "
                                         "icorr (A/cm2 ) | Polarization resistance (Ω) | Corrosion rate (mm/year) |",
                                   "| 10 | 0.0382 | 0.0086 | 0.5356 | 1.24E-05 | 246.080 | 0.0919 |"),
    # two small key/value tables (업종 | 적립 대상) whose columns sit one word-space apart: not found
    "korean-text-with-tables.pdf": (2, 4, "| 업종 | 적립 대상 |", "| 제과점 | 파리바게뜨, 뚜레쥬르 |"),
}


def main() -> int:
    import pypdfium2 as pdfium

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "data" / "doc_fixtures")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    files = sorted(p for p in args.fixtures.rglob("*.pdf"))
    rows, text_s, table_s, pages = [], 0.0, 0.0, 0
    for path in files:
        try:
            doc = pdfium.PdfDocument(path.read_bytes())
        except pdfium.PdfiumError:  # encrypted fixtures
            continue
        found, lines = 0, []
        for i in range(len(doc)):
            page = doc[i]
            textpage = page.get_textpage()
            t = time.perf_counter()
            textpage.get_text_bounded()
            t1 = time.perf_counter()
            result = pdf_tables.page_text(textpage, page.get_width())
            t2 = time.perf_counter()
            text_s, table_s, pages = text_s + t1 - t, table_s + t2 - t1, pages + 1
            if result is not None:
                found += result[1]
                lines += clean(result[0]).splitlines()  # as the parser keeps it
            textpage.close()
            page.close()
        row = {"file": path.name, "pages": len(doc), "tables": found}
        if path.name in KNOWN:
            cols, n_rows, header, body = KNOWN[path.name]
            row.update(expected_columns=cols, expected_rows=n_rows, header_found=header in lines,
                       row_found=body in lines)
        rows.append(row)
        doc.close()
    known = [r for r in rows if "header_found" in r]
    summary = {"pdfs": len(rows), "pages": pages, "known_tables": len(known),
               "known_found_exactly": sum(r["header_found"] and r["row_found"] for r in known),
               "tables_found_elsewhere": sum(r["tables"] for r in rows if "header_found" not in r),
               "text_extraction_s": round(text_s, 3), "table_finding_s": round(table_s, 3),
               "table_finding_ms_per_page": round(table_s / max(pages, 1) * 1000, 2)}
    if args.json:
        print(json.dumps({"files": rows, "summary": summary}, ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        extra = f"  header {'ok' if r['header_found'] else 'MISSED'}, row {'ok' if r['row_found'] else 'MISSED'}" \
            if "header_found" in r else ""
        print(f"{r['file']:<48} {r['pages']:>3} page(s) {r['tables']} table(s){extra}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
