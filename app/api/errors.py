"""Every error is JSON, shaped like OpenAI's (``{"error": {"message", "type", "code"}}``) so the
official clients raise their usual exceptions; the message says what happened and what to do."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ConfigError, KbError, NotFound, PermissionDenied
from app.services.api_keys import Unauthenticated

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error raised by the API layer itself (size, rate, queue)."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def too_large(limit_mb: float) -> ApiError:
    return ApiError(413, "request_too_large", f"The request is larger than the {limit_mb:g} MB limit "
                    "(api.max_request_mb). Send fewer files per request, or use `kb ingest` on the server.")


def body(status: int, kind: str, message: str, **extra) -> dict:
    return {"error": {"message": message, "type": kind, "code": status, **extra}}


def respond(status: int, kind: str, message: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    return JSONResponse(body(status, kind, message, **extra), status_code=status, headers=headers)


def status_of(exc: KbError) -> tuple[int, str]:
    if isinstance(exc, Unauthenticated):
        return 401, "unauthorized"
    if isinstance(exc, PermissionDenied):
        return 403, "forbidden"
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, ConfigError):
        return 503, "not_configured"
    return 422, "invalid_request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return respond(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(KbError)
    async def _kb_error(_req: Request, exc: KbError) -> JSONResponse:
        status, kind = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return respond(status, kind, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return respond(422, "invalid_request", "Invalid request: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
                413: "request_too_large"}.get(exc.status_code, "http_error")
        return respond(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error in the API", exc_info=exc)
        return respond(500, "internal_error", "kb hit an internal error; the server log has the details.")
