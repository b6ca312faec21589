"""The Generator contract, run by every implementation (rule 7 of the design notes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llm.llamacpp import LlamaCppGenerator
from llm.models import ModelInfo
from llm.openai_compat import OpenAICompatGenerator
from llm.types import ChatMessage, Generator


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    """An OpenAI-compatible server that streams the last user message back word by word."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            words = req["messages"][-1]["content"].split()[: req["max_tokens"]]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i, w in enumerate(words):
                delta = {"content": (" " if i else "") + w}
                self.wfile.write(f"data: {json.dumps({'choices': [{'delta': delta}]})}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(params=["llamacpp", "openai"])
def generator(request: pytest.FixtureRequest, echo_server: str) -> Generator:
    if request.param == "llamacpp":
        smollm2: ModelInfo = request.getfixturevalue("smollm2")
        return LlamaCppGenerator(smollm2.path, sha256=smollm2.sha256, n_ctx=2048)
    return OpenAICompatGenerator(echo_server, "echo", context_window=2048)


MESSAGES = [ChatMessage("system", "Repeat the user."), ChatMessage("user", "one two three four five six")]


@pytest.mark.slow
def test_generator_contract(generator: Generator) -> None:
    assert isinstance(generator.model_name, str) and generator.model_name
    assert generator.model_sha256 is None or len(generator.model_sha256) == 64
    assert generator.context_window == 2048
    short, long = generator.count_tokens("one two"), generator.count_tokens("one two three four five six")
    assert 0 < short < long
    deltas = list(generator.stream(MESSAGES, max_tokens=4, temperature=0.0))
    assert deltas and all(isinstance(d, str) for d in deltas)
    assert generator.count_tokens("".join(deltas)) <= 4 + 2
    # A stream can be abandoned half-way and the generator still works afterwards.
    it = generator.stream(MESSAGES, max_tokens=8, temperature=0.0)
    next(it)
    it.close()
    assert "".join(generator.stream(MESSAGES, max_tokens=4, temperature=0.0))
