"""The OpenAI-compatible client against a local SSE server (the test is about the client)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.errors import ConfigError, KbError
from llm.openai_compat import OpenAICompatGenerator, estimate_tokens
from llm.reasoning import split_reasoning
from llm.sampling import Sampling
from llm.types import ChatMessage

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "年假有几天？")]


def chunk(**delta: Any) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


class Server:
    """Serves one scripted response per test: a list of raw byte pieces written with flushes between."""

    def __init__(self) -> None:
        self.status = 200
        self.pieces: list[bytes] = []
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
                )
                self.send_response(server.status)
                ctype = "text/event-stream" if server.status == 200 else "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in server.pieces:
                    time.sleep(server.delay)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    t = threading.Thread(target=s.httpd.serve_forever, daemon=True)
    t.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_streams_content_deltas_and_sends_an_openai_request(server: Server) -> None:
    events = chunk(role="assistant") + chunk(content="年假") + chunk(content="为十五天") + chunk(content="[1]。")
    # Split the byte stream at awkward places: inside an event and inside a UTF-8 character.
    server.pieces = [b": keep-alive\n\n", events[:37], events[37:90], events[90:], b"data: [DONE]\n\n"]
    gen = OpenAICompatGenerator(server.url + "/v1/", "deepseek-r1", api_key="sekret", timeout=5)
    assert list(gen.stream(MESSAGES, max_tokens=77, temperature=0.3)) == ["年假", "为十五天", "[1]。"]
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sekret"
    assert req["json"] == {
        "model": "deepseek-r1",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "年假有几天？"}],
        "max_tokens": 77,
        "temperature": 0.3,
        "stream": True,
        **Sampling().openai_fields(),  # the default sampling (test_sampling.py checks the fields)
    }
    assert gen.model_name == "deepseek-r1" and gen.model_sha256 is None


def test_bare_host_gets_the_v1_prefix_and_no_key_no_header(server: Server) -> None:
    server.pieces = [chunk(content="ok"), b"data: [DONE]\n\n"]
    assert list(OpenAICompatGenerator(server.url, "m").stream(MESSAGES, 8, 0.0)) == ["ok"]
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert "Authorization" not in server.requests[0]["headers"]


def test_separate_reasoning_content_is_wrapped_in_think_tags(server: Server) -> None:
    server.pieces = [
        chunk(role="assistant"),
        chunk(reasoning_content="The user asks"),
        chunk(reasoning_content=" about leave."),
        chunk(content="Fifteen days [1]."),
        b"data: [DONE]\n\n",
    ]
    deltas = list(OpenAICompatGenerator(server.url, "m").stream(MESSAGES, 8, 0.0))
    # (the loop guard may hold a character back to the next delta: only the joined text is fixed)
    assert "".join(deltas) == "<think>The user asks about leave.</think>Fifteen days [1]."
    split = split_reasoning("".join(deltas))
    assert (split.reasoning, split.answer, split.unclosed) == ("The user asks about leave.",
                                                               "Fifteen days [1].", False)


def test_reasoning_cut_off_stays_unclosed(server: Server) -> None:
    server.pieces = [chunk(reasoning_content="still thinking")]  # no [DONE]: the server just ends
    deltas = list(OpenAICompatGenerator(server.url, "m").stream(MESSAGES, 8, 0.0))
    assert split_reasoning("".join(deltas)).unclosed


def test_http_errors_become_user_errors(server: Server) -> None:
    server.status = 401
    server.pieces = [b'{"error": {"message": "invalid api key"}}']
    with pytest.raises(KbError, match=r"HTTP 401.*invalid api key.*openai_api_key"):
        list(OpenAICompatGenerator(server.url, "m", api_key="bad").stream(MESSAGES, 8, 0.0))


def test_error_event_mid_stream(server: Server) -> None:
    server.pieces = [chunk(content="par"), b'data: {"error": {"message": "out of memory"}}\n\n']
    gen = OpenAICompatGenerator(server.url, "m")
    stream = gen.stream(MESSAGES, 8, 0.0)
    assert next(stream) == "par"
    with pytest.raises(KbError, match="out of memory"):
        next(stream)


def test_silent_server_times_out(server: Server) -> None:
    server.delay = 1.5
    server.pieces = [chunk(content="late")]
    with pytest.raises(KbError, match="stopped sending"):
        list(OpenAICompatGenerator(server.url, "m", timeout=0.5).stream(MESSAGES, 8, 0.0))


def test_unreachable_server() -> None:
    s = Server()  # bound but never serving, then closed: nothing listens on that port
    url = s.url
    s.httpd.server_close()
    with pytest.raises(KbError, match="Cannot reach"):
        list(OpenAICompatGenerator(url, "m", timeout=2).stream(MESSAGES, 8, 0.0))


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        OpenAICompatGenerator("gpu01:8080", "m")


def test_token_estimate_errs_high() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("年假为十五天") >= 6
    assert estimate_tokens("The quick brown fox jumps over the lazy dog.") >= 10  # 10 tokens in GPT BPEs
