"""POST /kb/upload over real HTTP on loopback: streamed to disk and queued, the size limit enforced from
Content-Length before the body is read, and only an admin's session from this site may upload."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx as _httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette

from app import accounts
from app.models import Document
from app.services import web_sessions
from app.services.session import SessionUser
from app.settings import UiSettings
from ui.upload_route import UPLOAD_PATH, upload_route

# The first upload loads the PII scrubber (file names are scrubbed): allow for it on a loaded machine.
httpx = _httpx.Client(timeout=120)


def _same_origin(request) -> bool:
    from ui.server import same_origin  # the server's own check

    return same_origin(request)


@pytest.fixture
def server(container) -> Iterator[tuple[str, object]]:
    from app.services.container import Container

    small = Container(container.settings.model_copy(update={"ui": UiSettings(max_upload_mb=0.01)}))  # ~10 KB
    with small.sessions.begin() as s:
        accounts.add_user(s, "sam", "staff", "staff-password-1")
    app = Starlette(routes=[upload_route(lambda: small, _same_origin, "kb_session")])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", small
    srv.should_exit = True
    thread.join(10)
    small.engine.dispose()


def read_reply(sock: socket.socket) -> str:
    """One whole HTTP/1.1 response (headers, then Content-Length bytes of body) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


def _token(c, name: str, role: str) -> str:
    now = time.time()
    token = web_sessions.complete(c, web_sessions.begin(c, SessionUser(name, role, True, now, now)))
    assert token
    return token


def _headers(url: str, token: str | None, name: str, collection: str = "inbox", **extra: str) -> dict[str, str]:
    h = {"Origin": url, "X-Kb-Upload": "1", "X-Kb-File-Name": quote(name), "X-Kb-Collection": quote(collection),
         "Content-Type": "application/octet-stream", **extra}
    if token:
        h["Cookie"] = f"kb_session={token}"
    return h


def test_upload_streams_queues_and_refuses(server):
    url, c = server
    admin = _token(c, "admin", "admin")
    body = b"Parking permits are renewed every March at the front desk."
    r = httpx.post(url + UPLOAD_PATH, content=body, headers=_headers(url, admin, "报告/sub/停车.txt"))
    assert r.status_code == 200, r.text
    [res] = r.json()["results"]
    assert res["outcome"] == "queued" and res["document_id"]
    with c.sessions() as s:
        doc = s.get(Document, res["document_id"])
        assert doc.source.endswith("停车.txt") and "sub" in doc.source and doc.status == "queued"

    # Over the cap by its Content-Length: 413 at once, no body ever sent.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in _headers(url, admin, "big.bin").items())
        sock.sendall(f"POST {UPLOAD_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: {2**40}\r\n\r\n"
                     .encode())
        reply = read_reply(sock)
    assert reply.startswith("HTTP/1.1 413") and '"too_large"' in reply, reply
    # Over the cap while streaming (chunked, no length up front): cut off at the cap, nothing stored.
    big = (b"x" * 4096 for _ in range(10))
    r = httpx.post(url + UPLOAD_PATH, content=big, headers=_headers(url, admin, "chunked.txt"))
    assert r.status_code in (411, 413), r.text
    with c.sessions() as s:
        assert s.scalars(select(Document.source)).all() == [doc.source]

    # Only an admin's session, from this site, with the marker header.
    sam = _token(c, "sam", "staff")
    assert httpx.post(url + UPLOAD_PATH, content=b"x", headers=_headers(url, sam, "a.txt")).status_code == 403
    assert httpx.post(url + UPLOAD_PATH, content=b"x", headers=_headers(url, None, "a.txt")).status_code == 401
    assert httpx.post(url + UPLOAD_PATH, content=b"x", headers=_headers(url, "forged", "a.txt")).status_code == 401
    evil = _headers(url, admin, "a.txt", Origin="http://evil.example")
    assert httpx.post(url + UPLOAD_PATH, content=b"x", headers=evil).status_code == 403
    unmarked = {k: v for k, v in _headers(url, admin, "a.txt").items() if k != "X-Kb-Upload"}
    assert httpx.post(url + UPLOAD_PATH, content=b"x", headers=unmarked).status_code == 403
    r = httpx.post(url + UPLOAD_PATH, content=b"x", headers=_headers(url, admin, "a.txt", collection=""))
    assert r.status_code == 400 and "collection" in r.json()["error"]
    web_sessions.end(c, admin)  # signed out: the cookie opens nothing any more
    assert httpx.post(url + UPLOAD_PATH, content=b"x", headers=_headers(url, admin, "a.txt")).status_code == 401
