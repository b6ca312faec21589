"""Both generator backends run the Generator contract (rule 7 of the design notes): llama.cpp with the
real small model (SmolLM2-135M), the OpenAI-compatible client against a local echo server."""

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
from llm.registry import GENERATORS
from llm.types import Generator
from tests.contracts.generator import GeneratorContract


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


@pytest.mark.slow
class TestLlamaCppGenerator(GeneratorContract):
    @pytest.fixture
    def generator(self, smollm2: ModelInfo) -> Generator:
        return LlamaCppGenerator(smollm2.path, sha256=smollm2.sha256, n_ctx=self.context_window)

    def test_verified_digest(self, generator: Generator, smollm2: ModelInfo) -> None:
        generator.count_tokens("load")
        assert generator.model_sha256 == smollm2.sha256


class TestOpenAICompatGenerator(GeneratorContract):
    @pytest.fixture
    def generator(self, echo_server: str) -> Generator:
        return OpenAICompatGenerator(echo_server, "echo", context_window=self.context_window)


class TestFailoverGenerator(GeneratorContract):
    """The pool answers through its first healthy member, so it must keep the same contract."""

    @pytest.fixture
    def generator(self, echo_server: str) -> Generator:
        from llm.failover import FailoverGenerator, Member

        return FailoverGenerator([Member("openai", OpenAICompatGenerator(echo_server, "echo",
                                                                         context_window=self.context_window))])


def test_every_backend_runs_the_contract() -> None:
    covered = {"llamacpp": TestLlamaCppGenerator, "openai": TestOpenAICompatGenerator,
               "failover": TestFailoverGenerator}
    assert set(GENERATORS) == set(covered)
