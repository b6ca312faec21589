"""Sampling settings reach both backends, and the loop guard sits inside both backends' streams."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.settings import LlmSettings
from llm.llamacpp import LlamaCppGenerator, _Loaded
from llm.openai_compat import OpenAICompatGenerator
from llm.repetition import AnswerStream, LoopGuard
from llm.sampling import PROMPT_ECHO_STOPS, Sampling
from llm.types import ChatMessage

MESSAGES = [ChatMessage("system", "Answer from the sources."), ChatMessage("user", "Can I bring a pet?")]
LOOP = "Yes [1]. " + "A petting zoo with a cat [1]. " * 30


def test_settings_defaults_are_the_sampling_defaults() -> None:
    cfg = LlmSettings()
    assert Sampling.from_settings(cfg) == Sampling()
    assert LoopGuard.from_settings(cfg) == LoopGuard()
    assert LoopGuard.from_settings(LlmSettings(loop_guard=False)) is None
    assert LoopGuard.from_settings(LlmSettings(loop_min_repeats=5)) == LoopGuard(min_repeats=5)
    assert cfg.max_tokens == 384
    custom = Sampling.from_settings(LlmSettings(repeat_penalty=1.3, top_k=0, seed=7))
    assert (custom.repeat_penalty, custom.top_k, custom.seed) == (1.3, 0, 7)


class FakeLlama:
    """Stands in for llama_cpp.Llama: records the call and streams a scripted text."""

    def __init__(self, text: str, finish: str = "stop") -> None:
        self.text, self.finish = text, finish
        self.calls: list[dict[str, Any]] = []
        self.tokens_streamed = 0
        self.closed = False

    def create_chat_completion(self, **kwargs: Any) -> Iterator[dict]:
        self.calls.append(kwargs)
        try:
            for i in range(0, len(self.text), 4):
                self.tokens_streamed += 1
                yield {"choices": [{"delta": {"content": self.text[i : i + 4]}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": self.finish}]}
        finally:
            self.closed = True


def fake_generator(text: str, finish: str = "stop", **kwargs: Any) -> tuple[LlamaCppGenerator, FakeLlama]:
    gen = LlamaCppGenerator(Path("/nonexistent.gguf"), **kwargs)
    llama = FakeLlama(text, finish)
    gen._loaded = _Loaded(llama, None, "0" * 64, threading.Lock(), 0)
    return gen, llama


def test_llamacpp_passes_the_sampling_and_cuts_a_loop() -> None:
    sampling = Sampling(top_p=0.9, top_k=20, min_p=0.1, repeat_penalty=1.15, presence_penalty=0.2,
                        frequency_penalty=0.1, seed=42)
    gen, llama = fake_generator(LOOP, sampling=sampling)
    stream = gen.stream(MESSAGES, max_tokens=99, temperature=0.0)
    assert isinstance(stream, AnswerStream)
    assert "".join(stream) == "Yes [1]. A petting zoo with a cat [1]."
    assert stream.finish_reason == "repetition"
    assert llama.closed and llama.tokens_streamed < len(LOOP) // 4  # generation stopped early
    call = llama.calls[0]
    assert call["max_tokens"] == 99 and call["temperature"] == 0.0 and call["stream"] is True
    assert {k: call[k] for k in ("top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
                                 "frequency_penalty", "seed")} == {
        "top_p": 0.9, "top_k": 20, "min_p": 0.1, "repeat_penalty": 1.15, "presence_penalty": 0.2,
        "frequency_penalty": 0.1, "seed": 42}
    assert call["stop"] == list(PROMPT_ECHO_STOPS)  # a model echoing the prompt's markup stops
    assert not gen._loaded.lock.locked()  # the cut released the model for the next question


def test_llamacpp_default_sampling_and_finish_reason() -> None:
    gen, llama = fake_generator("Twenty-five days [1].", finish="length")
    stream = gen.stream(MESSAGES, max_tokens=8, temperature=0.2)
    assert "".join(stream) == "Twenty-five days [1]." and stream.finish_reason == "length"
    call = llama.calls[0]
    assert call["repeat_penalty"] == Sampling().repeat_penalty and "seed" not in call
    gen_off, _ = fake_generator(LOOP, loop_guard=None)
    assert "".join(gen_off.stream(MESSAGES, 8, 0.0)) == LOOP


@pytest.fixture
def looping_server() -> Iterator[tuple[str, list[dict], list[int]]]:
    """An OpenAI-compatible server that streams LOOP slowly; records requests and events sent."""
    requests: list[dict] = []
    sent = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for i in range(0, len(LOOP), 4):
                    delta = {"content": LOOP[i : i + 4]}
                    self.wfile.write(f"data: {json.dumps({'choices': [{'delta': delta}]})}\n\n".encode())
                    self.wfile.flush()
                    sent[0] += 1
                self.wfile.write(b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\n')
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", requests, sent
    httpd.shutdown()
    httpd.server_close()


def test_openai_backend_sends_the_sampling_and_cuts_a_loop(looping_server) -> None:
    url, requests, _ = looping_server
    gen = OpenAICompatGenerator(url, "m", sampling=Sampling(top_p=0.8, repeat_penalty=1.2, seed=3))
    stream = gen.stream(MESSAGES, 64, 0.1)
    assert "".join(stream) == "Yes [1]. A petting zoo with a cat [1]."
    assert stream.finish_reason == "repetition"
    body = requests[0]
    assert body["top_p"] == 0.8 and body["seed"] == 3
    assert body["repeat_penalty"] == body["repetition_penalty"] == 1.2  # llama.cpp server / vLLM names
    assert body["top_k"] == 40 and body["min_p"] == 0.05
    assert body["presence_penalty"] == body["frequency_penalty"] == 0.0
    assert body["stop"] == list(PROMPT_ECHO_STOPS)


def test_openai_neutral_extensions_are_not_sent() -> None:
    fields = Sampling(top_k=0, min_p=0.0, repeat_penalty=1.0, stop=()).openai_fields()
    assert set(fields) == {"top_p", "presence_penalty", "frequency_penalty"}


def test_openai_finish_reason_is_kept(looping_server) -> None:
    url, _, _ = looping_server
    stream = OpenAICompatGenerator(url, "m", loop_guard=None).stream(MESSAGES, 64, 0.1)
    assert "".join(stream) == LOOP and stream.finish_reason == "stop"


def test_settings_reach_the_generators_the_registry_builds(tmp_path) -> None:
    """What an operator sets under llm.* is what the backend uses (not the dataclass defaults)."""
    from llm.registry import build_generator

    cfg = LlmSettings(repeat_penalty=1.3, top_k=0, seed=7, loop_guard=False, n_threads_batch=1, n_batch=64,
                      model_path=tmp_path / "m.gguf", openai_base_url="http://127.0.0.1:9/v1")
    local = build_generator(cfg, tmp_path)
    assert local.sampling == Sampling.from_settings(cfg)
    assert local.sampling.repeat_penalty == 1.3 and local.loop_guard is None
    assert (local._n_threads_batch, local._n_batch) == (1, 64)
    remote = build_generator(cfg.model_copy(update={"backend": "openai", "loop_min_repeats": 4,
                                                    "loop_guard": True}), tmp_path)
    assert remote.sampling.seed == 7 and remote.loop_guard == LoopGuard(min_repeats=4)


def test_a_cpu_generation_marks_itself_foreground_while_it_streams(tmp_path) -> None:
    from app import foreground

    lock = foreground.lock_path(tmp_path)
    gen, _ = fake_generator("One answer, written once.", foreground_lock=lock)
    stream = gen.stream(MESSAGES, max_tokens=20, temperature=0.0)
    next(stream)
    assert foreground.busy(lock)  # the worker's embedding waits now
    list(stream)
    assert not foreground.busy(lock)
    gen._loaded.n_gpu_layers = -1  # on a GPU the CPU is free for the embedder
    stream = gen.stream(MESSAGES, max_tokens=20, temperature=0.0)
    next(stream)
    assert not foreground.busy(lock)
    list(stream)
