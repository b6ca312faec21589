"""Who is calling: the bearer API key becomes the Caller every service takes."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from app.services import api_keys
from app.services.caller import Caller


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller (401 otherwise), within its key's rate limit (429)."""
    state = request.app.state
    try:
        who = api_keys.authenticate(state.container, bearer(request), client="api")
    except api_keys.Unauthenticated:
        state.metrics.auth_failures.inc()
        raise
    try:
        state.limiter.check(who.key_id)
    except Exception:
        state.metrics.rate_limited.inc()
        raise
    request.state.caller = who
    return who


def optional_caller(request: Request) -> Caller | None:
    """The caller when a key is sent (and valid: a wrong key is still 401), else None."""
    return caller(request) if bearer(request) else None


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (name, password) if sep else None
