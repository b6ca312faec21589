"""Authenticated encryption at rest: AES-256-GCM or SM4-GCM, envelope keys, sealed files.

Sealed record layout: ``b"K1" | cipher id (1 byte) | nonce (12) | ciphertext | tag (16)``.
Every record is sealed with associated data naming what it is (table, ids, key version), so a
ciphertext copied into another row fails to open instead of showing the wrong text.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.errors import ConfigError, IntegrityError

MAGIC = b"K1"
NONCE_LEN = 12
TAG_LEN = 16
HEADER_LEN = len(MAGIC) + 1 + NONCE_LEN
FILE_MAGIC = b"KBF1"
FILE_SEGMENT = 1 << 20  # files are sealed in 1 MiB segments so none is ever held whole in memory


class Aead(Protocol):
    name: str
    cipher_id: int
    key_len: int

    def encrypt(self, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes: ...


class AesGcm:
    name = "aes-256-gcm"
    cipher_id = 1
    key_len = 32

    def encrypt(self, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return AESGCM(key).encrypt(nonce, data, aad)

    def decrypt(self, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return AESGCM(key).decrypt(nonce, data, aad)


class Sm4Gcm:
    """SM4 (GB/T 32907) in GCM mode as in RFC 8998; 128-bit keys."""

    name = "sm4-gcm"
    cipher_id = 2
    key_len = 16

    def encrypt(self, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        return enc.update(data) + enc.finalize() + enc.tag

    def decrypt(self, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < TAG_LEN:
            raise InvalidTag()
        dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, data[-TAG_LEN:])).decryptor()
        dec.authenticate_additional_data(aad)
        return dec.update(data[:-TAG_LEN]) + dec.finalize()


CIPHERS: dict[str, Aead] = {c.name: c for c in (AesGcm(), Sm4Gcm())}
_BY_ID: dict[int, Aead] = {c.cipher_id: c for c in CIPHERS.values()}

# Known-answer vectors: NIST GCM test case 14 and RFC 8998 appendix A.1.
_KAT = {
    "aes-256-gcm": dict(
        key="00" * 32, nonce="00" * 12, aad="", pt="00" * 16,
        ct="cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919",
    ),
    "sm4-gcm": dict(
        key="0123456789abcdeffedcba9876543210", nonce="00001234567800000000abcd",
        aad="feedfacedeadbeeffeedfacedeadbeefabaddad2",
        pt="aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd"
        "eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa",
        ct="17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735"
        "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
        "83de3541e4c2b58177e065a9bf7b62ec",
    ),
}


def get_cipher(name: str) -> Aead:
    """The named cipher after a known-answer self-test; refuses to start rather than fall back."""
    if name not in CIPHERS:
        raise ConfigError(f"Unknown cipher {name!r}; choose one of: {', '.join(CIPHERS)}.")
    cipher, v = CIPHERS[name], _KAT[name]
    try:
        out = cipher.encrypt(bytes.fromhex(v["key"]), bytes.fromhex(v["nonce"]), bytes.fromhex(v["pt"]),
                             bytes.fromhex(v["aad"]))
    except Exception as exc:  # e.g. an OpenSSL build without SM4
        raise ConfigError(
            f"The cipher {name} is not available in this OpenSSL build ({type(exc).__name__}). "
            "Install an OpenSSL/cryptography build with SM4, or set KB_CRYPTO__CIPHER=aes-256-gcm."
        ) from None
    if out.hex() != v["ct"]:
        raise ConfigError(f"The {name} self-test gave a wrong answer; refusing to encrypt with this build.")
    return cipher


def aad_of(*parts: object) -> bytes:
    """Canonical associated data: unambiguous join of the record's identity."""
    return b"\x1f".join(str(p).encode() for p in parts)


def seal(cipher: Aead, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    return MAGIC + bytes([cipher.cipher_id]) + nonce + cipher.encrypt(key, nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Open a sealed record with whichever cipher sealed it; any damage raises IntegrityError."""
    if len(blob) < HEADER_LEN + TAG_LEN or blob[:2] != MAGIC:
        raise IntegrityError("Sealed data is truncated or not a kb record.")
    cipher = _BY_ID.get(blob[2])
    if cipher is None:
        raise IntegrityError("Sealed data names an unknown cipher.")
    if len(key) != cipher.key_len:
        raise IntegrityError("Sealed data does not open with this key (wrong key length).")
    try:
        return cipher.decrypt(key, blob[3:HEADER_LEN], blob[HEADER_LEN:], aad)
    except InvalidTag:
        raise IntegrityError(
            "Sealed data failed authentication: it was altered, truncated, moved to another record, "
            "or the key is wrong."
        ) from None


def cipher_of(blob: bytes) -> Aead:
    """The cipher a sealed record names in its header."""
    if len(blob) < HEADER_LEN or blob[:2] != MAGIC or blob[2] not in _BY_ID:
        raise IntegrityError("Sealed data is truncated or not a kb record.")
    return _BY_ID[blob[2]]


def bytes_hmac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def content_hmac(key: bytes, text: str) -> str:
    """Keyed fingerprint of normalized text, for duplicate detection without storing plaintext."""
    normalized = " ".join(text.split()).casefold()
    return hmac.new(key, normalized.encode(), hashlib.sha256).hexdigest()


def seal_stream(cipher: Aead, key: bytes, src: BinaryIO | Iterable[bytes], dst: BinaryIO, aad: bytes) -> int:
    """Seal a stream segment by segment. Each segment's AAD carries its index and a last-segment flag,
    so reordering, dropping or truncating segments is detected. Returns plaintext bytes written."""
    dst.write(FILE_MAGIC)
    total = 0
    chunks = iter(lambda: src.read(FILE_SEGMENT), b"") if hasattr(src, "read") else iter(src)
    pending = next(chunks, b"")
    index = 0
    while True:
        nxt = next(chunks, None)
        last = nxt is None
        body = seal(cipher, key, pending, aad + struct.pack(">Q?", index, last))
        dst.write(struct.pack(">I", len(body)) + body)
        total += len(pending)
        if last:
            return total
        pending, index = nxt, index + 1


def open_stream(key: bytes, src: BinaryIO, aad: bytes) -> Iterable[bytes]:
    """Yield plaintext segments of a sealed stream, verifying each before it is released."""
    if src.read(len(FILE_MAGIC)) != FILE_MAGIC:
        raise IntegrityError("Sealed file is not a kb file or its header is damaged.")
    index = 0
    while True:
        head = src.read(4)
        if len(head) < 4:
            raise IntegrityError("Sealed file is truncated (no final segment).")
        (size,) = struct.unpack(">I", head)
        body = src.read(size)
        if len(body) != size:
            raise IntegrityError("Sealed file is truncated.")
        # Try as a middle segment, then as the last one: only the truthful flag authenticates.
        for last in (False, True):
            try:
                plain = open_sealed(key, body, aad + struct.pack(">Q?", index, last))
                break
            except IntegrityError:
                continue
        else:
            raise IntegrityError(f"Sealed file segment {index} failed authentication.")
        yield plain
        if last:
            if src.read(1):
                raise IntegrityError("Sealed file has data after its final segment.")
            return
        index += 1


def seal_file(cipher: Aead, key: bytes, src: Path, dst: Path, aad: bytes) -> int:
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        n = seal_stream(cipher, key, fin, fout, aad)
    os.replace(tmp, dst)
    return n


def seal_bytes_to_file(cipher: Aead, key: bytes, data: bytes, dst: Path, aad: bytes) -> None:
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    with open(tmp, "wb") as fout:
        seal_stream(cipher, key, (data[i : i + FILE_SEGMENT] for i in range(0, max(len(data), 1), FILE_SEGMENT)),
                    fout, aad)
    os.replace(tmp, dst)


def open_file(key: bytes, path: Path, aad: bytes) -> bytes:
    with open(path, "rb") as f:
        return b"".join(open_stream(key, f, aad))
