"""Time POST /kb/upload (the Documents page's uploader route) over loopback and check its memory stays flat.

Usage: .venv/bin/python -m bench.upload_stream [--files 200] [--big-mb 64]

Starts the route in uvicorn on a free port against a fresh kb in a temp dir, signs an admin in (a real
web session), then sends --files small text files one by one (three at a time, as the browser does) and
one --big-mb file, and reports files/s and the server process's peak RSS growth during the big file
(streamed to disk, it should stay far below the file's size). Nothing is indexed (no worker runs).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--big-mb", type=int, default=64)
    args = ap.parse_args()

    import httpx
    import uvicorn
    from starlette.applications import Starlette

    from app.services import web_sessions
    from app.services.container import Container
    from app.services.session import SessionUser
    from app.services.setup import init
    from app.settings import Settings
    from ui.server import same_origin
    from ui.upload_route import UPLOAD_PATH, upload_route

    root = Path(tempfile.mkdtemp(prefix="kb-bench-upload-"))
    c = Container(Settings(data_dir=root / "data", database={"url": f"sqlite:///{root / 'kb.sqlite3'}"},
                           ui={"max_upload_mb": args.big_mb * 2}))
    init(c, "admin", "bench-admin-password-1")
    now = time.time()
    token = web_sessions.complete(c, web_sessions.begin(c, SessionUser("admin", "admin", True, now, now)))
    app = Starlette(routes=[upload_route(lambda: c, same_origin, "kb_session")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(timeout=600)

    def send(name: str, body) -> int:
        h = {"Origin": url, "X-Kb-Upload": "1", "X-Kb-File-Name": quote(name), "X-Kb-Collection": "bench",
             "Content-Type": "application/octet-stream", "Cookie": f"kb_session={token}"}
        r = client.post(url + UPLOAD_PATH, content=body, headers=h)
        r.raise_for_status()
        return r.status_code

    send("warm-up.txt", b"Loads the file-name scrubber once.")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda i: send(f"folder/sub{i % 10}/note-{i:05d}.txt", f"Note {i}.".encode()),
                      range(args.files)))
    small_s = time.perf_counter() - t0
    big = root / "big.bin"
    with big.open("wb") as f:
        for _ in range(args.big_mb):
            f.write(os.urandom(1 << 20))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with big.open("rb") as f:  # a file object: httpx streams it, so only the server side is measured
        send("big.bin", f)
    big_s = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.files} small files: {small_s:.1f} s, {args.files / small_s:.1f} files/s (3 at a time)")
    print(f"one {args.big_mb} MB file: {big_s:.1f} s, {args.big_mb / big_s:.0f} MB/s; peak RSS grew "
          f"{rss1 - rss0:.0f} MB (client and server in one process)")
    server.should_exit = True


if __name__ == "__main__":
    main()
