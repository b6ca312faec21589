"""The failover pool: a remote OpenAI-compatible server that fails (a local stub), the fallback answering,
the switch after 3 failures, the health check switching back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.errors import KbError
from app.settings import LlmSettings
from llm.failover import FailoverGenerator, Member, http_probe
from llm.openai_compat import OpenAICompatGenerator
from llm.registry import build_generator
from llm.types import ChatMessage, Generator

MESSAGES = [ChatMessage("user", "How many days of leave?")]


class Stub:
    """A local OpenAI-compatible server: healthy (answers 'remote says hi') or failing (HTTP 500)."""

    def __init__(self) -> None:
        self.healthy = False
        self.chat_calls = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a) -> None:
                pass

            def _fail(self) -> None:
                self.send_response(500)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"down")

            def do_GET(self) -> None:  # /v1/models, the health check
                if not stub.healthy:
                    return self._fail()
                body = b'{"object": "list", "data": [{"id": "remote"}]}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.chat_calls += 1
                if not stub.healthy:
                    return self._fail()
                events = b"".join(
                    b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": t}}]}).encode() + b"\n\n"
                    for t in ("remote ", "says ", "hi")) + b"data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(events)))
                self.end_headers()
                self.wfile.write(events)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()


class Local:
    """Stands in for the in-process model (these tests are about the pool)."""

    model_name, model_sha256, think_prefilled, context_window = "local-model", "abc123", False, 2048

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.fail_after = 0, fail_after

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, max_tokens, temperature) -> Iterator[str]:
        self.calls += 1
        yield "local "
        if self.fail_after is not None:
            raise KbError("the local model crashed mid-answer")
        yield "answer"


def _pool(stub: Stub, local: Local) -> FailoverGenerator:
    remote = OpenAICompatGenerator(stub.url, "remote", timeout=5)
    return FailoverGenerator([Member("openai", remote, http_probe(stub.url, timeout=2)), Member("llamacpp", local)],
                             failures_to_switch=3, check_every_s=0)  # the test runs the checks itself


def _answer(gen: Generator) -> str:
    return "".join(gen.stream(MESSAGES, 32, 0.0))


def test_fallback_answers_then_the_pool_switches_after_three_failures_and_back(stub):
    local = Local()
    pool = _pool(stub, local)
    assert isinstance(pool, Generator)
    assert pool.active.name == "openai"
    for i in range(3):  # the remote fails each time; the local model still answers every request
        assert _answer(pool) == "local answer"
        assert pool.model_name == "local-model" and pool.model_sha256 == "abc123"  # who answered, for the audit
        assert stub.chat_calls == i + 1
    assert pool.active.name == "llamacpp"
    status = pool.status()
    assert status["active"] == "llamacpp" and status["members"][0]["healthy"] is False
    assert _answer(pool) == "local answer" and stub.chat_calls == 3  # switched: the remote is skipped

    pool.check()  # still failing: stays switched
    assert pool.active.name == "llamacpp"
    stub.healthy = True
    pool.check()  # the health check passes: switch back
    assert pool.active.name == "openai"
    assert _answer(pool) == "remote says hi" and pool.model_name == "remote" and pool.model_sha256 is None
    assert local.calls == 4


def test_health_checks_alone_take_a_failing_remote_out(stub):
    stub.healthy = True
    pool = _pool(stub, Local())
    pool.check()
    assert pool.active.name == "openai"
    stub.healthy = False
    for _ in range(3):
        pool.check()
    assert pool.active.name == "llamacpp" and stub.chat_calls == 0


def test_a_failure_mid_answer_is_not_retried_elsewhere(stub):
    stub.healthy = True
    crashing = Local(fail_after=1)
    pool = FailoverGenerator([Member("llamacpp", crashing), Member("other", Local())], check_every_s=0)
    with pytest.raises(KbError, match="mid-answer"):
        _answer(pool)  # text was already streamed: retrying would repeat it


def test_every_member_failing_says_so(stub):
    pool = FailoverGenerator([Member("openai", OpenAICompatGenerator(stub.url, "remote", timeout=5))],
                             check_every_s=0)
    with pytest.raises(KbError, match="Every generator failed"):
        _answer(pool)


def test_the_background_checker_switches_back(stub):
    local = Local()
    remote = OpenAICompatGenerator(stub.url, "remote", timeout=5)
    pool = FailoverGenerator([Member("openai", remote, http_probe(stub.url, timeout=2)), Member("llamacpp", local)],
                             failures_to_switch=1, check_every_s=0.1)
    try:
        assert _answer(pool) == "local answer" and pool.active.name == "llamacpp"
        stub.healthy = True
        for _ in range(100):
            if pool.active.name == "openai":
                break
            threading.Event().wait(0.05)
        assert pool.active.name == "openai"
    finally:
        pool.close()


def test_settings_build_the_pool_and_leave_out_a_missing_local_model(stub, tmp_path):
    cfg = LlmSettings(backend="failover", openai_base_url=stub.url, failover_order=["openai", "llamacpp"])
    pool = build_generator(cfg, tmp_path / "models")  # no local model pulled there
    assert isinstance(pool, FailoverGenerator) and [m.name for m in pool.members] == ["openai"]
