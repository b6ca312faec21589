"""Sealing and opening throughput (MB/s) for both ciphers: small records (chunk-sized) and large files.

    .venv/bin/python bench/crypto.py [--mb 64] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time

from app import crypto


def rate(nbytes: int, seconds: float) -> float:
    return round(nbytes / seconds / 1e6, 1)


def bench(name: str, total_mb: int) -> dict:
    cipher = crypto.get_cipher(name)
    key = os.urandom(cipher.key_len)
    out: dict = {"cipher": name}
    # chunk-sized records (1 KiB, like a sealed chunk of ~200 tokens)
    rec = os.urandom(1024)
    n = total_mb * 1024
    t = time.perf_counter()
    blobs = [crypto.seal(cipher, key, rec, b"chunks\x1f1\x1f%d" % i) for i in range(n)]
    out["records_seal_MBps"] = rate(n * 1024, time.perf_counter() - t)
    t = time.perf_counter()
    for i, b in enumerate(blobs):
        crypto.open_sealed(key, b, b"chunks\x1f1\x1f%d" % i)
    out["records_open_MBps"] = rate(n * 1024, time.perf_counter() - t)
    out["records_per_s_open"] = round(n / (time.perf_counter() - t))
    # a large file, sealed in 1 MiB segments
    data = os.urandom(total_mb * 1024 * 1024)
    sink = io.BytesIO()
    t = time.perf_counter()
    crypto.seal_stream(cipher, key, io.BytesIO(data), sink, b"blob")
    out["file_seal_MBps"] = rate(len(data), time.perf_counter() - t)
    sink.seek(0)
    t = time.perf_counter()
    size = sum(len(p) for p in crypto.open_stream(key, sink, b"blob"))
    out["file_open_MBps"] = rate(size, time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=64, help="megabytes per measurement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [bench(name, args.mb) for name in crypto.CIPHERS]
    if args.json:
        print(json.dumps({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "results": rows}, indent=2))
        return
    cols = ["cipher", "records_seal_MBps", "records_open_MBps", "records_per_s_open", "file_seal_MBps",
            "file_open_MBps"]
    print("  ".join(f"{c:>18}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]!s:>18}" for c in cols))


if __name__ == "__main__":
    main()
