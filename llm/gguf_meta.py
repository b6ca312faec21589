"""Read the metadata header of a GGUF file without loading (or memory-mapping) its tensors."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.errors import KbError

_MAGIC = b"GGUF"
# GGUF value types -> struct format of the scalar ones.
_SCALAR = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9
# Arrays longer than this (token lists, merges) are skipped, not kept: we only need their length.
_KEEP_ARRAY = 64
_MAX_FIELD_BYTES = 64 << 20  # no real header string (chat templates included) comes near this


class GgufError(KbError):
    pass


@dataclass(frozen=True)
class GgufHeader:
    version: int
    tensor_count: int
    fields: dict[str, Any]  # long arrays are replaced by their length as an int
    tensor_types: Counter[int]  # ggml type id -> number of tensors

    @property
    def architecture(self) -> str | None:
        return self.fields.get("general.architecture")

    @property
    def context_length(self) -> int | None:
        arch = self.architecture
        value = self.fields.get(f"{arch}.context_length") if arch else None
        return int(value) if value is not None else None

    @property
    def chat_templates(self) -> dict[str, str]:
        """Chat templates by name: 'default' for tokenizer.chat_template, plus named variants."""
        out: dict[str, str] = {}
        for key, value in self.fields.items():
            if key == "tokenizer.chat_template" and isinstance(value, str):
                out["default"] = value
            elif key.startswith("tokenizer.chat_template.") and isinstance(value, str):
                out[key.removeprefix("tokenizer.chat_template.")] = value
        return out

    @property
    def quantization(self) -> str:
        """File type such as 'Q4_K_M' (general.file_type), else the most common tensor type."""
        file_type = self.fields.get("general.file_type")
        if file_type is not None:
            return _file_type_name(int(file_type))
        if self.tensor_types:
            return _tensor_type_name(self.tensor_types.most_common(1)[0][0])
        return "unknown"


def _file_type_name(value: int) -> str:
    try:
        from gguf import LlamaFileType

        return LlamaFileType(value).name.removeprefix("MOSTLY_")
    except (ImportError, ValueError):
        return f"file_type {value}"


def _tensor_type_name(value: int) -> str:
    try:
        from gguf import GGMLQuantizationType

        return GGMLQuantizationType(value).name
    except (ImportError, ValueError):
        return f"type {value}"


class _Reader:
    def __init__(self, f: IO[bytes], path: Path) -> None:
        self.f = f
        self.path = path

    def read(self, n: int) -> bytes:
        if n > _MAX_FIELD_BYTES:  # a damaged length field would otherwise ask for gigabytes at once
            raise GgufError(f"{self.path}: a GGUF header field claims {n} bytes; the file is damaged.")
        data = self.f.read(n)
        if len(data) != n:
            raise GgufError(f"{self.path} is truncated: its GGUF header ends early. Download it again.")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.read(self.unpack("<Q")).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.f.seek(self.unpack("<Q"), 1)

    def value(self, vtype: int) -> Any:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if count <= _KEEP_ARRAY:
                return [self.value(etype) for _ in range(count)]
            if etype in _SCALAR:
                self.f.seek(count * struct.calcsize(_SCALAR[etype]), 1)
            elif etype == _STRING:
                for _ in range(count):
                    self.skip_string()
            else:
                for _ in range(count):
                    self.value(etype)
            return count
        raise GgufError(f"{self.path}: unknown GGUF value type {vtype}; the file is damaged or too new.")


def read_header(path: Path, tensor_types: bool = True) -> GgufHeader:
    """Parse the key/value metadata (and, if asked, each tensor's type) of a GGUF file."""
    with open(path, "rb") as f:
        r = _Reader(f, path)
        if f.read(4) != _MAGIC:
            raise GgufError(f"{path} is not a GGUF model file (wrong magic bytes).")
        version = r.unpack("<I")
        if version < 2:
            raise GgufError(f"{path} is GGUF version {version}; only versions 2 and later are supported.")
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        fields: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            fields[key] = r.value(r.unpack("<I"))
        types: Counter[int] = Counter()
        if tensor_types:
            for _ in range(n_tensors):
                r.skip_string()
                n_dims = r.unpack("<I")
                f.seek(8 * n_dims, 1)
                types[r.unpack("<I")] += 1
                f.seek(8, 1)  # data offset
    return GgufHeader(version=version, tensor_count=n_tensors, fields=fields, tensor_types=types)
