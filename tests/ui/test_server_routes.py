"""ui/server.py's cookie routes: same-origin only, HttpOnly SameSite=Strict cookie, no open redirect."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.services import session, web_sessions
from tests.ui.conftest import PASSWORDS
from ui import server

HOST = "kb.example.internal"


@pytest.fixture
def client(kb, monkeypatch):
    monkeypatch.setattr(server, "_CONTAINER", None)  # built from this test's KB_ settings
    app = Starlette(routes=server.ROUTES)
    with TestClient(app, base_url=f"http://{HOST}", follow_redirects=False) as c:
        yield c


def code_for(kb, name: str = "sam") -> str:
    return web_sessions.begin(kb, session.sign_in(kb, name, PASSWORDS[name]))


def test_a_good_code_from_this_site_sets_the_cookie_and_goes_back(kb, client):
    r = client.post("/kb/session", data={"code": code_for(kb), "next": "/documents"},
                    headers={"Origin": f"http://{HOST}"})
    assert r.status_code == 303 and r.headers["location"] == "/documents"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("kb_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert web_sessions.resume(kb, token).user.name == "sam"
    assert token not in r.headers["location"]


def test_behind_tls_the_cookie_is_secure(kb, client):
    r = client.post("/kb/session", data={"code": code_for(kb)},
                    headers={"Origin": f"https://{HOST}", "X-Forwarded-Proto": "https"})
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


@pytest.mark.parametrize("headers", [{}, {"Origin": "https://evil.example"}, {"Origin": "null"},
                                     {"Referer": "https://evil.example/x"}])
def test_a_post_from_another_site_is_refused(kb, client, headers):
    code = code_for(kb)
    r = client.post("/kb/session", data={"code": code}, headers=headers)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert web_sessions.complete(kb, code)  # the refused request did not spend the code


def test_a_spent_or_unknown_code_opens_nothing(kb, client):
    code = code_for(kb)
    origin = {"Origin": f"http://{HOST}"}
    assert client.post("/kb/session", data={"code": code}, headers=origin).status_code == 303
    again = client.post("/kb/session", data={"code": code}, headers=origin)
    assert again.headers["location"] == "/?signin=expired" and "set-cookie" not in again.headers
    r = client.post("/kb/session", data={"code": "guess"}, headers=origin)
    assert r.headers["location"] == "/?signin=expired"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil", "chat"])
def test_next_never_leaves_the_site(kb, client, target):
    r = client.post("/kb/session", data={"code": code_for(kb), "next": target},
                    headers={"Origin": f"http://{HOST}"})
    assert r.headers["location"] == "/"


def test_sign_out_ends_the_session_and_deletes_the_cookie(kb, client):
    origin = {"Origin": f"http://{HOST}"}
    r = client.post("/kb/session", data={"code": code_for(kb)}, headers=origin)
    token = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    client.cookies.set("kb_session", token)
    out = client.post("/kb/sign-out", headers=origin)
    assert out.status_code == 303 and 'kb_session=""' in out.headers["set-cookie"]
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert web_sessions.resume(kb, token) is None
