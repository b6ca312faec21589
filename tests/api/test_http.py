"""The API over real HTTP without a model: keys required, JSON errors, limits, health, metrics, docs."""

from __future__ import annotations

import io

import httpx
import pytest

from app.api.app import create_app
from app.services import api_keys
from tests.api.conftest import ADMIN, auth, new_key, serve


def test_health_is_open_and_readiness_names_what_is_missing(api, client):
    c, url = api
    assert client.get(f"{url}/healthz").json() == {"status": "ok"}
    r = client.get(f"{url}/readyz")
    body = r.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["keys"] == "ok"
    # no model was pulled into this data dir: not ready, and it says so
    assert r.status_code == 503 and body["ready"] is False and "model" in body["checks"]["model"].lower()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nonsense"},
                                     {"Authorization": "Bearer kb_000000000000_" + "A" * 43},
                                     {"Authorization": "Basic YWRtaW46YWRtaW4tcGFzc3dvcmQtMQ=="}])
def test_every_route_needs_a_key(api, client, headers):
    _, url = api
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/api/v1/search"),
                         ("GET", "/api/v1/documents"), ("GET", "/api/v1/audit/records"), ("GET", "/api/v1/me")):
        r = client.request(method, url + path, headers=headers, json={})
        assert r.status_code == 401, (method, path, r.text)
        err = r.json()["error"]
        assert err["type"] == "unauthorized" and err["code"] == 401 and "key" in err["message"]
        assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_and_expired_keys_stop_at_once(api, client):
    c, url = api
    made = api_keys.create(c, ADMIN, "sam")
    assert client.get(f"{url}/api/v1/me", headers=auth(made.secret)).json()["user"] == "sam"
    api_keys.revoke(c, ADMIN, made.key.id)
    assert client.get(f"{url}/api/v1/me", headers=auth(made.secret)).status_code == 401


def test_roles_give_403_and_bad_input_422(api, client):
    c, url = api
    sam, audrey, admin = new_key(c, "sam"), new_key(c, "audrey"), new_key(c, "admin")
    r = client.get(f"{url}/api/v1/documents", headers=auth(sam))
    assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden" and "admin" in r.json()["error"]["message"]
    assert client.delete(f"{url}/api/v1/documents/1", headers=auth(audrey)).status_code == 403
    assert client.get(f"{url}/api/v1/documents", headers=auth(admin)).json() == {"documents": []}
    assert client.get(f"{url}/api/v1/documents/999", headers=auth(admin)).status_code == 404
    assert client.get(f"{url}/api/v1/audit/records", headers=auth(audrey)).status_code == 200
    for bad in ({}, {"query": ""}, {"query": "x", "k": 0}, {"query": "x", "k": "many"}):
        r = client.post(f"{url}/api/v1/search", headers=auth(sam), json=bad)
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request", bad
    for bad in ({"messages": []}, {"messages": [{"role": "assistant", "content": "hi"}]},
                {"messages": [{"role": "user", "content": "   "}]}, {"model": "kb"}):
        r = client.post(f"{url}/v1/chat/completions", headers=auth(sam), json=bad)
        assert r.status_code == 422, (bad, r.text)
    r = client.post(f"{url}/api/v1/search", headers={**auth(sam), "Content-Type": "application/json"},
                    content=b"{not json")
    assert r.status_code == 422


def test_staff_read_only_their_own_audit_records(api, client):
    c, url = api
    sam = new_key(c, "sam")
    client.post(f"{url}/api/v1/search", headers=auth(sam), json={"query": "leave days"})
    records = client.get(f"{url}/api/v1/audit/records", headers=auth(sam)).json()["records"]
    assert records and {r["actor"] for r in records} == {"sam"}
    search = next(r for r in records if r["action"] == "search")
    assert search["client"] == "api" and search["details"]["api_key_id"] is not None
    assert search["question"] == "leave days"


def test_request_body_over_the_cap_is_413(tmp_path, container, client):
    container.settings.api.max_request_mb = 0.01  # 10 KB
    admin = new_key(container, "admin")
    with serve(create_app(container)) as url:
        big = io.BytesIO(b"x" * 50_000)
        r = client.post(f"{url}/api/v1/documents", headers=auth(admin), data={"collection": "hr"},
                        files={"files": ("big.txt", big, "text/plain")})
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"

        def chunks():  # no Content-Length: counted while it streams in
            for _ in range(20):
                yield b"y" * 1000

        r = client.post(f"{url}/api/v1/search", headers={**auth(admin), "Content-Type": "application/json"},
                        content=chunks())
        assert r.status_code == 413


def test_a_key_over_its_rate_limit_gets_429(container, client):
    container.settings.api.rate_limit_per_minute = 3
    sam_key, other = new_key(container, "admin"), new_key(container, "admin")
    with serve(create_app(container)) as url:
        codes = [client.get(f"{url}/v1/models", headers=auth(sam_key)).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        r = client.get(f"{url}/v1/models", headers=auth(sam_key))
        assert r.json()["error"]["type"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        assert client.get(f"{url}/v1/models", headers=auth(other)).status_code == 200  # per key


def test_models_lists_kb(api, client):
    c, url = api
    r = client.get(f"{url}/v1/models", headers=auth(new_key(c, "sam")))
    assert r.json()["data"][0]["id"] == "kb"


def test_metrics_open_on_loopback_only_when_allowed(api, client):
    c, url = api
    r = client.get(f"{url}/metrics")
    assert r.status_code == 200 and "kb_http_request_duration_seconds" in r.text
    for name in ("kb_ingest_jobs", "kb_ingest_oldest_queued_seconds", "kb_documents", "kb_chunks",
                 "kb_audit_chain_ok", "kb_generator_queue_depth", "kb_database_gauges_ok 1.0"):
        assert name in r.text, name
    c.settings.api.metrics_loopback = False
    assert client.get(f"{url}/metrics").status_code == 401
    assert client.get(f"{url}/metrics", headers=auth(new_key(c, "sam"))).status_code == 403
    assert client.get(f"{url}/metrics", headers=auth(new_key(c, "admin"))).status_code == 200


def test_route_latency_is_labelled_by_template_and_status(api, client):
    c, url = api
    admin = new_key(c, "admin")
    client.get(f"{url}/api/v1/documents/12345", headers=auth(admin))
    text = client.get(f"{url}/metrics").text
    assert 'route="/api/v1/documents/{doc_id}"' in text and 'status="404"' in text


def test_docs_only_for_admins(api, client):
    c, url = api
    assert client.get(f"{url}/docs").status_code == 401
    assert "Basic" in client.get(f"{url}/docs").headers["www-authenticate"]
    assert client.get(f"{url}/openapi.json", headers=auth(new_key(c, "sam"))).status_code == 403
    assert client.get(f"{url}/docs", auth=httpx.BasicAuth("sam", "sam-password-1")).status_code == 403
    assert client.get(f"{url}/docs", auth=httpx.BasicAuth("admin", "wrong-password")).status_code == 401
    page = client.get(f"{url}/docs", auth=httpx.BasicAuth("admin", "admin-password-1"))
    assert page.status_code == 200 and "/v1/chat/completions" in page.text and "<script" not in page.text
    spec = client.get(f"{url}/openapi.json", headers=auth(new_key(c, "admin"))).json()
    assert "/api/v1/search" in spec["paths"]


def test_docs_can_be_switched_off(container, client):
    container.settings.api.docs = "off"
    with serve(create_app(container)) as url:
        assert client.get(f"{url}/docs", auth=httpx.BasicAuth("admin", "admin-password-1")).status_code == 404
        assert client.get(f"{url}/openapi.json").status_code == 404


def test_feedback_only_on_your_own_answers(api, client):
    c, url = api
    sam = new_key(c, "sam")
    r = client.post(f"{url}/api/v1/feedback", headers=auth(sam), json={"audit_seq": 1, "rating": "up"})
    assert r.status_code == 404  # record 1 is the first admin's creation, not an answer
    r = client.post(f"{url}/api/v1/feedback", headers=auth(sam), json={"audit_seq": 1, "rating": "meh"})
    assert r.status_code == 422
