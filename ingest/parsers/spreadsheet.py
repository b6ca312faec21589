"""Spreadsheets: XLSX with openpyxl, legacy XLS with xlrd; one section per sheet or block of rows.

Why openpyxl: the maintained, MIT-licensed XLSX reader; ``read_only`` streams rows so a large
workbook does not build a full object model, and ``data_only`` gives the cached values of formulas
(what the user saw) rather than the formula text. Why xlrd: since 2.0 it reads only .xls, which is
exactly the job, with no native code; it reports encrypted workbooks clearly.
"""

from __future__ import annotations

import io

from ingest.parsers.base import finish, guard
from ingest.parsers.tabular import rows_to_sections
from ingest.types import DocStatus, IngestError, ParsedDocument, Section


class XlsxParser:
    formats = ("xlsx",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        import openpyxl

        with guard("xlsx"):
            workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                sections: list[Section] = []
                for sheet in workbook.worksheets:
                    if not hasattr(sheet, "iter_rows"):  # chart sheets carry no cells
                        continue
                    sections.extend(rows_to_sections(sheet.iter_rows(values_only=True), sheet=sheet.title))
                title = workbook.properties.title if workbook.properties else None
                metadata = {"sheets": str(len(workbook.sheetnames))}
            finally:
                workbook.close()
        return finish(sections, "xlsx", title=title, metadata=metadata, empty_reason="workbook has no cell values")


class XlsParser:
    formats = ("xls",)

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        import xlrd

        with guard("xls"):
            try:
                book = xlrd.open_workbook(file_contents=data, on_demand=True)
            except xlrd.XLRDError as exc:
                if "encrypt" in str(exc).lower():
                    raise IngestError(
                        DocStatus.needs_password,
                        "XLS workbook is password-protected: remove the password in Excel and upload it again",
                    ) from exc
                raise
            try:
                sections: list[Section] = []
                for index in range(book.nsheets):
                    sheet = book.sheet_by_index(index)
                    rows = ([_xls_value(cell, book.datemode) for cell in sheet.row(r)] for r in range(sheet.nrows))
                    sections.extend(rows_to_sections(rows, sheet=sheet.name))
                    book.unload_sheet(index)
                metadata = {"sheets": str(book.nsheets)}
            finally:
                book.release_resources()
        return finish(sections, "xls", metadata=metadata, empty_reason="workbook has no cell values")


def _xls_value(cell, datemode: int) -> object:
    import xlrd

    if cell.ctype == xlrd.XL_CELL_DATE:
        try:
            return xlrd.xldate_as_datetime(cell.value, datemode)
        except (ValueError, OverflowError, xlrd.xldate.XLDateError):
            return cell.value
    if cell.ctype == xlrd.XL_CELL_BOOLEAN:
        return bool(cell.value)
    if cell.ctype in (xlrd.XL_CELL_ERROR, xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return None
    return cell.value
