"""The web UI's server: Streamlit's own ASGI app (st.App) plus the two routes that handle the cookie.

``kb serve`` runs ``streamlit run ui/server.py``; Streamlit finds ``app`` below and serves ui/app.py
with uvicorn. Streamlit cannot set an HttpOnly cookie, so these routes do, on the same origin:

* ``POST /kb/session`` (form field ``code``): trades the sign-in page's one-time hand-off code for a
  session token in the ``kb_session`` cookie (HttpOnly, SameSite=Strict, Path=/, Secure over TLS)
  and sends the browser back to the page it came from (303). No token ever appears in a URL.
* ``POST /kb/sign-out``: ends the session the cookie names and deletes the cookie.

Both refuse a POST whose Origin is not this site, so another site cannot sign a browser in or out.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

# `streamlit run ui/server.py` puts ui/ first on sys.path, where ui/app.py would shadow the `app`
# package; the project root goes in front of it (as in ui/app.py).
_ROOT = str(Path(__file__).resolve().parents[1])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, RedirectResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from ui.upload_route import upload_route  # noqa: E402

COOKIE = "kb_session"
SESSION_PATH = "/kb/session"
SIGN_OUT_PATH = "/kb/sign-out"
MAX_FORM_BYTES = 4096


def _container():
    from app.services.container import Container
    from app.settings import Settings

    global _CONTAINER
    if _CONTAINER is None:
        _CONTAINER = Container(Settings())
    return _CONTAINER


_CONTAINER = None


def _is_tls(request: Request) -> bool:
    # a TLS-terminating proxy says so in X-Forwarded-Proto; the flag only ever makes the cookie stricter
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def same_origin(request: Request) -> bool:
    """The POST came from a page of this site: its Origin (else Referer) has this request's host.

    A proxy that rewrites Host may say the original in X-Forwarded-Host; a cross-site form in a browser
    can set neither header, so accepting either keeps other sites out.
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    hosts = {request.headers.get("host", "").lower(),
             request.headers.get("x-forwarded-host", "").split(",")[0].strip().lower()} - {""}
    return urlsplit(source).netloc.lower() in hosts


def _back(request: Request, target: str | None, query: str = "") -> RedirectResponse:
    # only a path on this site: never an absolute or scheme-relative URL (no open redirect)
    path = target if target and target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
    path = path.split("?", 1)[0].split("#", 1)[0]
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)


async def _form(request: Request) -> dict[str, str] | None:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return None
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def set_session_cookie(response: Response, token: str, request: Request, max_age_s: int) -> None:
    response.set_cookie(COOKIE, token, max_age=max_age_s, path="/", httponly=True, samesite="strict",
                        secure=_is_tls(request))


async def start_session(request: Request) -> Response:
    from app.services import web_sessions

    if not same_origin(request):
        return PlainTextResponse("Sign-in must come from this site's own sign-in page.", status_code=403)
    form = await _form(request)
    if form is None:
        return PlainTextResponse("Request too large.", status_code=413)
    c = _container()
    token = await run_in_threadpool(web_sessions.complete, c, form.get("code", ""))
    if token is None:
        return _back(request, form.get("next"), "signin=expired")
    response = _back(request, form.get("next"))
    set_session_cookie(response, token, request, int(c.settings.ui.session_hours * 3600))
    return response


async def sign_out(request: Request) -> Response:
    from app.services import web_sessions

    if not same_origin(request):
        return PlainTextResponse("Sign-out must come from this site.", status_code=403)
    form = await _form(request) or {}
    await run_in_threadpool(web_sessions.end, _container(), request.cookies.get(COOKIE))
    response = _back(request, form.get("next"))
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_is_tls(request))
    return response


ROUTES = [Route(SESSION_PATH, start_session, methods=["POST"]), Route(SIGN_OUT_PATH, sign_out, methods=["POST"])]
# The Documents page's uploader streams each file here (ui/upload_route.py, issue 18 part B).
ROUTES.append(upload_route(_container, same_origin, COOKIE))

app = st.App(str(Path(__file__).with_name("app.py")), routes=ROUTES)
