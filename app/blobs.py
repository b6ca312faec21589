"""Original uploads, sealed under data/blobs/ with random names (an uploaded name is never a path)."""

from __future__ import annotations

import uuid
from pathlib import Path

from app import crypto
from app.keys import Vault


def _path(blobs_dir: Path, name: str) -> Path:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError("invalid blob name")
    return blobs_dir / name[:2] / name


def store(vault: Vault, blobs_dir: Path, dek: bytes, document_id: int, data: bytes) -> str:
    name = uuid.uuid4().hex
    path = _path(blobs_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    crypto.seal_bytes_to_file(vault.cipher_for(dek), dek, data, path, crypto.aad_of("blob", document_id))
    return name


def load(blobs_dir: Path, dek: bytes, document_id: int, name: str) -> bytes:
    return crypto.open_file(dek, _path(blobs_dir, name), crypto.aad_of("blob", document_id))


def delete(blobs_dir: Path, name: str | None) -> None:
    if name:
        _path(blobs_dir, name).unlink(missing_ok=True)
