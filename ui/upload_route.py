"""``POST /kb/upload``: one file per request, streamed to disk, for the Documents page's uploader.

Streamlit's own uploader keeps every file in the server's memory until the widget is cleared, which a
folder of thousands of files cannot afford. The page's uploader (ui/uploader.py) sends each file here
instead, on the same origin, as the raw request body:

* the session is the HttpOnly cookie (``web_sessions.resume``: an admin's live session); the Origin must
  be this site and the request must carry ``X-Kb-Upload: 1`` (a header no form of another site can send
  without a CORS preflight, which this route never answers);
* ``X-Kb-File-Name`` (the path inside the chosen folder) and ``X-Kb-Collection`` are percent-encoded UTF-8;
* a ``Content-Length`` over ``ui.max_upload_mb`` is refused with 413 before one byte of the body is read,
  and a body that grows past it anyway (a lying or missing length) is cut off at the cap;
* the body goes to a private temporary file piece by piece as it arrives, and from there through
  ``documents.save_uploads``: the same limits, scrubbing, queueing and audit record as every upload.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.errors import KbError

UPLOAD_PATH = "/kb/upload"
MARKER = "x-kb-upload"
MAX_HEADER_CHARS = 4096


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _header(request: Request, name: str) -> str:
    raw = request.headers.get(name, "")
    return unquote(raw, errors="strict") if len(raw) <= MAX_HEADER_CHARS else ""


def upload_route(container: Callable[[], Any], same_origin: Callable[[Request], bool], cookie: str) -> Route:
    """The route, given how the server finds its Container, checks the Origin, and names its session cookie."""

    async def upload(request: Request) -> JSONResponse:
        from app.services import documents, web_sessions

        if not same_origin(request) or request.headers.get(MARKER) != "1":
            return _error(403, "Uploads must come from this site's Documents page.")
        c = container()
        resumed = await run_in_threadpool(web_sessions.resume, c, request.cookies.get(cookie))
        if resumed is None:
            return _error(401, "Your session ended. Sign in again and upload the rest.")
        if resumed.user.role != "admin":
            return _error(403, "Only admins upload documents.")
        try:
            name, collection = _header(request, "x-kb-file-name"), _header(request, "x-kb-collection")
            password = _header(request, "x-kb-file-password") or None  # opens protected files once, never kept
        except UnicodeDecodeError:
            return _error(400, "The file or collection name is not valid UTF-8.")
        if not name.strip() or not collection.strip():
            return _error(400, "Each upload needs a file name and a collection.")
        limit_mb = c.settings.ui.max_upload_mb
        cap = int(limit_mb * 1024 * 1024)
        too_large = {"source": name, "outcome": "too_large", "document_id": None,
                     "reason": f"larger than the {limit_mb:g} MB upload limit (ui.max_upload_mb): split it or use "
                               "`kb ingest` on the server"}
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return _error(411, "Send the file with its length (Content-Length).")
        if int(length) > cap:  # refused before reading any of it
            return JSONResponse({"results": [too_large]}, status_code=413)
        fd, path = tempfile.mkstemp(prefix="kb-upload-")  # 0600, removed below whatever happens
        try:
            written = 0
            with os.fdopen(fd, "wb") as out:
                async for piece in request.stream():
                    written += len(piece)
                    if written > cap:
                        return JSONResponse({"results": [too_large]}, status_code=413)
                    out.write(piece)
            with open(path, "rb") as f:
                results = await run_in_threadpool(documents.save_uploads, c, resumed.user,
                                                  [documents.Upload(name, f)], collection, password)
        except ClientDisconnect:
            return _error(400, "The upload was interrupted.")
        except KbError as exc:
            return _error(400, str(exc))
        finally:
            os.unlink(path)
        return JSONResponse({"results": [asdict(r) for r in results]})

    return Route(UPLOAD_PATH, upload, methods=["POST"])
