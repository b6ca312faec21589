"""The FastAPI application: routes, JSON errors, limits, metrics, health and admin-only docs.

``create_app(container)`` builds it around one Container (the tests and ``kb serve`` pass theirs);
``from_environment()`` is the uvicorn factory ``kb api`` runs, building the Container from KB_ settings.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api import chat, errors, routes
from app.api.auth import basic_credentials, bearer, optional_caller
from app.api.limits import AnswerSlots, BodyLimit, RateLimiter
from app.api.metrics import ApiMetrics, LatencyMiddleware
from app.errors import KbError
from app.services import api_keys, monitoring, session
from app.services.caller import Caller

DESCRIPTION = """kb's HTTP API. Send `Authorization: Bearer <key>` (`kb api-keys create USER`); a key acts with
exactly its user's role and collection grants. `/v1` is OpenAI-compatible (point an OpenAI client at
`http://HOST:PORT/v1`); `/api/v1` holds kb's own endpoints. Errors are JSON: `{"error": {"message", "type",
"code"}}`."""


def create_app(container) -> FastAPI:
    s = container.settings.api
    app = FastAPI(title="kb", version="1", description=DESCRIPTION, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.container = container
    app.state.metrics = metrics = ApiMetrics()
    app.state.limiter = RateLimiter(s.rate_limit_per_minute)
    app.state.slots = AnswerSlots(s.max_pending_answers, s.retry_after_s)
    metrics.capacity.set(app.state.slots.capacity)
    metrics.install_gauges(lambda: _system_gauges(container))
    errors.install(app)
    app.include_router(chat.router)
    app.include_router(routes.router)
    _health(app)
    _metrics_route(app)
    if s.docs == "admin":
        _docs(app)
    # outermost last: latency covers everything, including a 413
    app.add_middleware(BodyLimit, max_bytes=int(s.max_request_mb * 1024 * 1024), limit_mb=s.max_request_mb)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    return app


def from_environment() -> FastAPI:
    from app.services.container import Container
    from app.settings import Settings

    return create_app(Container(Settings()))


def _system_gauges(container) -> tuple[Any, Any]:
    g = monitoring.gauges(container)
    gen = vars(container).get("generator")  # only a generator already built: scraping never loads a model
    pool = gen.status() if gen is not None and hasattr(gen, "status") else None
    return g, pool


def _health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Database, keys, model and index are ready")
    def readyz(request: Request) -> JSONResponse:
        r = monitoring.readiness(request.app.state.container)
        return JSONResponse({"ready": r.ok, "checks": r.checks}, status_code=200 if r.ok else 503)


def _metrics_route(app: FastAPI) -> None:
    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (loopback, or an admin key)")
    def prometheus(request: Request, who: Caller | None = Depends(optional_caller)) -> Response:
        host = request.client.host if request.client else None
        if not monitoring.may_read_metrics(request.app.state.container, who, host):
            raise errors.ApiError(403 if who else 401, "forbidden" if who else "unauthorized",
                                  "Metrics need an admin key when read from another machine.")
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _docs(app: FastAPI) -> None:
    """OpenAPI for admins only: an admin key, or an admin's user name and password (the browser asks).
    The page is rendered here from the schema, so it needs no script from the internet."""

    def admin(request: Request) -> None:
        c = request.app.state.container
        who = None
        try:
            if bearer(request):
                who = api_keys.authenticate(c, bearer(request))
            elif (cred := basic_credentials(request)) is not None:
                who = session.sign_in(c, *cred, client=request.client.host if request.client else None)
        except KbError:
            who = None
        if who is None:
            raise errors.ApiError(401, "unauthorized", "The API docs are for admins: sign in with an admin's user "
                                  "name and password, or send an admin key.",
                                  {"WWW-Authenticate": 'Basic realm="kb API docs", charset="UTF-8"'})
        if who.role != "admin":
            raise errors.ApiError(403, "forbidden", "The API docs are for admins.")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(admin)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(admin)])
    def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi()))


def render_docs(spec: dict[str, Any]) -> str:
    e = html.escape
    out = [f"<!doctype html><meta charset='utf-8'><title>{e(spec['info']['title'])} API</title>",
           "<style>body{font:15px system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
           "code,pre{background:#f4f4f4;padding:.1em .3em}h3{margin-bottom:.2em}.m{font-weight:bold}</style>",
           f"<h1>{e(spec['info']['title'])} API</h1><p>{e(spec['info'].get('description', ''))}</p>",
           "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"]
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            out.append(f"<h3><span class='m'>{e(method.upper())}</span> <code>{e(path)}</code></h3>"
                       f"<p>{e(op.get('summary', ''))}</p>")
            params = [p["name"] + ("*" if p.get("required") else "") for p in op.get("parameters", [])]
            if params:
                out.append(f"<p>parameters: {e(', '.join(params))}</p>")
            body = op.get("requestBody", {}).get("content", {})
            for ctype, media in body.items():
                out.append(f"<details><summary>body ({e(ctype)})</summary><pre>"
                           f"{e(json.dumps(media.get('schema', {}), indent=1))}</pre></details>")
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        out.append("<h2>Schemas</h2>")
        for name, schema in schemas.items():
            out.append(f"<details><summary>{e(name)}</summary><pre>{e(json.dumps(schema, indent=1))}</pre></details>")
    return "\n".join(out)
