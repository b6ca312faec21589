"""A damaged GGUF header is refused with a clear error, never a crash or a huge allocation."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from llm.gguf_meta import GgufError, read_header


def _header(n_kv: int, key_len: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv) + struct.pack("<Q", key_len)


@pytest.mark.parametrize("body,message", [
    (b"GGUF" + b"\xff" * 64, "damaged"),  # junk after the magic: absurd version / lengths
    (_header(1, 2**62), "damaged"),  # a key length of 4 EiB
    (_header(1, 10) + b"short", "truncated"),
    (b"NOPE" + b"\0" * 32, "not a GGUF"),
])
def test_damaged_headers_are_refused(tmp_path: Path, body: bytes, message: str) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(body)
    with pytest.raises(GgufError, match=message):
        read_header(path)
