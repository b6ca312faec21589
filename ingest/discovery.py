"""Find the files to ingest under folders and inside zip archives, within size and archive limits.

Each file becomes a :class:`Candidate` with a stable display path (``folder/sub/file.pdf``,
``bundle.zip!inner/file.docx``) and a way to read its bytes. Problems decided without parsing —
too large, zip slip, zip bomb, encrypted entry, archive nested too deep — come as a pre-set
``IngestError`` so the caller records the file with that status and never reads it.

Archive entries are never extracted to disk and their names are never used as paths: they are read
into memory through ``zipfile`` with the declared sizes checked first (``zipfile`` stops at the
declared size and fails the CRC if an entry lies about it).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app.settings import IngestSettings
from ingest.detect import ZIP_MAGICS, classify_zip
from ingest.types import DocStatus, IngestError

_MB = 1024 * 1024
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r", "__macosx"}
# A small file of zeros or spaces compresses far beyond any sane ratio; only judge ratios of real size.
_RATIO_MIN_BYTES = 1 * _MB
_MAX_NESTING = 1  # an archive inside an archive is opened; one inside that is not
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_archive_entries: int
    max_archive_total_bytes: int
    max_archive_ratio: float

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> Limits:
        return cls(
            max_file_bytes=int(settings.max_file_mb * _MB),
            max_archive_entries=settings.max_archive_entries,
            max_archive_total_bytes=int(settings.max_archive_total_mb * _MB),
            max_archive_ratio=settings.max_archive_ratio,
        )


@dataclass(frozen=True)
class Candidate:
    """One file to ingest. ``error`` set means: record it with that status, do not read it."""

    source: str
    size: int
    reader: Callable[[], bytes] | None = None
    error: IngestError | None = None

    def read(self) -> bytes:
        if self.error is not None or self.reader is None:
            raise self.error or IngestError(DocStatus.failed, "nothing to read")
        return self.reader()


def is_junk(name: str) -> bool:
    """Hidden files, OS metadata and Office lock files (``~$report.docx``, ``.~lock.x.odt#``)."""
    lower = name.lower()
    return lower.startswith((".", "~$")) or lower in _JUNK_NAMES


def junk_reason(name: str) -> str:
    """Why a junk name is skipped, in words an uploader understands (an upload reports it, never drops it)."""
    lower = name.lower()
    if lower in _JUNK_NAMES or lower.startswith("._"):
        return f"skipped: {name!r} is operating-system metadata, not a document"
    if lower.startswith(("~$", ".~lock")):
        return f"skipped: {name!r} is an Office lock file left by an open document"
    return f"skipped: {name!r} is hidden (its name starts with '.'); rename it without the dot to index it"


def discover(paths: list[Path], limits: Limits) -> Iterator[Candidate]:
    """Yield every candidate under ``paths`` (files, folders recursively, zip archives opened)."""
    seen: set[Path] = set()
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from _walk_folder(path, limits, seen)
        elif path.is_file():
            yield from _file_candidates(path, path.name, limits, seen)
        else:
            yield Candidate(str(path), 0, error=IngestError(DocStatus.failed, "no such file or folder"))


def _walk_folder(root: Path, limits: Limits, seen: set[Path]) -> Iterator[Candidate]:
    # Sorted walk so the same folder always yields the same order; symlinked folders are not entered.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
        for name in sorted(filenames):
            if is_junk(name):
                continue
            path = Path(dirpath, name)
            display = PurePosixPath(root.name, *path.relative_to(root).parts).as_posix()
            yield from _file_candidates(path, display, limits, seen)


def _file_candidates(path: Path, display: str, limits: Limits, seen: set[Path]) -> Iterator[Candidate]:
    try:
        resolved = path.resolve()
        size = path.stat().st_size
    except OSError as exc:
        yield Candidate(display, 0, error=IngestError(DocStatus.failed, f"cannot read file: {exc.strerror}"))
        return
    if resolved in seen:
        return
    seen.add(resolved)
    if _is_plain_zip(path):
        yield from _archive_candidates(lambda: zipfile.ZipFile(path), display, size, limits, depth=0)
        return
    if size > limits.max_file_bytes:
        yield Candidate(display, size, error=_too_large(size, limits))
        return
    yield Candidate(display, size, reader=path.read_bytes)


def _too_large(size: int, limits: Limits) -> IngestError:
    return IngestError(
        DocStatus.too_large,
        f"file is {size / _MB:.1f} MB, above the {limits.max_file_bytes / _MB:.0f} MB limit "
        "(ingest.max_file_mb): split it or raise the limit",
    )


def _is_plain_zip(path: Path) -> bool:
    """A zip that is an archive, not a zip-based document (docx, xlsx, odt, epub...)."""
    try:
        with path.open("rb") as fh:
            if not fh.read(4).startswith(ZIP_MAGICS):
                return False
        with zipfile.ZipFile(path) as zf:
            return classify_zip(zf) == "zip"
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        # A damaged .zip is still reported as an archive problem, not handed to the parsers.
        return path.suffix.lower() == ".zip"


def _safe_entry_name(name: str) -> str | None:
    """The entry's path if it stays inside the archive; None for absolute paths or ``..`` (zip slip)."""
    normal = name.replace("\\", "/")
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal):
        return None
    parts = [p for p in normal.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or not parts:
        return None
    return "/".join(parts)


def _printable(name: str) -> str:
    return _UNPRINTABLE.sub("?", name)[:300]


def _archive_candidates(
    opener: Callable[[], zipfile.ZipFile], display: str, size: int, limits: Limits, depth: int
) -> Iterator[Candidate]:
    try:
        with opener() as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        yield Candidate(display, size, error=IngestError(DocStatus.failed, f"damaged zip archive ({exc})"))
        return
    if len(infos) > limits.max_archive_entries:
        yield Candidate(
            display,
            size,
            error=IngestError(
                DocStatus.too_large,
                f"archive has {len(infos)} entries, above the limit of {limits.max_archive_entries} "
                "(ingest.max_archive_entries): split it into smaller archives",
            ),
        )
        return
    total = sum(i.file_size for i in infos)
    if total > limits.max_archive_total_bytes:
        yield Candidate(
            display,
            size,
            error=IngestError(
                DocStatus.too_large,
                f"archive unpacks to {total / _MB:.0f} MB, above the {limits.max_archive_total_bytes / _MB:.0f} MB "
                "limit (ingest.max_archive_total_mb): split it into smaller archives",
            ),
        )
        return
    for info in infos:
        safe = _safe_entry_name(info.filename)
        source = f"{display}!{_printable(safe or info.filename)}"
        if safe is None:
            yield Candidate(
                source,
                info.file_size,
                error=IngestError(
                    DocStatus.failed,
                    "unsafe path in archive (absolute or '..': zip slip); entry skipped, never extracted",
                ),
            )
            continue
        if any(is_junk(part) for part in safe.split("/")):
            continue
        error = _entry_error(info, limits)
        if error is not None:
            yield Candidate(source, info.file_size, error=error)
            continue
        reader = _entry_reader(opener, info.filename, info.file_size)
        if _is_zip_name_or_magic(safe, reader, info):
            if depth >= _MAX_NESTING:
                yield Candidate(
                    source,
                    info.file_size,
                    error=IngestError(
                        DocStatus.unsupported,
                        "archive nested more than one level deep: unpack it and upload its contents",
                    ),
                )
                continue
            yield from _archive_candidates(_nested_opener(reader), source, info.file_size, limits, depth=depth + 1)
            continue
        yield Candidate(source, info.file_size, reader=reader)


def _entry_error(info: zipfile.ZipInfo, limits: Limits) -> IngestError | None:
    if info.flag_bits & 0x1:
        return IngestError(
            DocStatus.needs_password,
            "encrypted zip entry: extract the archive with its password and upload the files",
        )
    if info.file_size > limits.max_file_bytes:
        return _too_large(info.file_size, limits)
    if info.file_size >= _RATIO_MIN_BYTES:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_archive_ratio:
            return IngestError(
                DocStatus.failed,
                f"compression ratio {ratio:.0f}:1 is above the limit of {limits.max_archive_ratio:.0f}:1 "
                "(zip bomb guard, ingest.max_archive_ratio); entry not unpacked",
            )
    return None


def _entry_reader(opener: Callable[[], zipfile.ZipFile], name: str, size: int) -> Callable[[], bytes]:
    """Reopen the archive on each read, so candidates stay valid after the walk has moved on."""

    def read() -> bytes:
        try:
            with opener() as zf, zf.open(name) as fh:
                data = fh.read(size + 1)
        except RuntimeError as exc:  # zipfile's way of saying "password required"
            raise IngestError(DocStatus.needs_password, "encrypted zip entry: extract it with its password") from exc
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
            raise IngestError(DocStatus.failed, f"damaged zip entry ({exc})") from exc
        if len(data) > size:  # zipfile enforces the declared size; this is belt and braces
            raise IngestError(DocStatus.failed, "zip entry is larger than its header says; not read")
        return data

    return read


def _nested_opener(reader: Callable[[], bytes]) -> Callable[[], zipfile.ZipFile]:
    return lambda: zipfile.ZipFile(io.BytesIO(reader()))


def _is_zip_name_or_magic(name: str, reader: Callable[[], bytes], info: zipfile.ZipInfo) -> bool:
    """Nested archives are plain zips; a .docx inside a zip is a document, not an archive."""
    if not name.lower().endswith(".zip"):
        return False
    try:
        data = reader()
    except IngestError:
        return True  # reported when the nested archive is opened
    if not data.startswith(ZIP_MAGICS):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return classify_zip(zf) == "zip"
    except (zipfile.BadZipFile, ValueError, EOFError):
        return True
