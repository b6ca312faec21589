"""Generation on an OpenAI-compatible server (llama.cpp server, vLLM, ...) over streaming SSE.

Only the standard library: one HTTP/1.1 request per answer with ``stream: true``; each ``data:`` event
carries a ``chat.completion.chunk``. Servers that return reasoning separately
(``delta.reasoning_content``, as vLLM's reasoning parsers and DeepSeek's API do) have it wrapped in
``<think>...</think>`` so callers split it exactly like in-process output.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import urlsplit

from app.errors import ConfigError, KbError
from llm.reasoning import CLOSE_TAG, OPEN_TAG
from llm.repetition import AnswerStream, LoopGuard
from llm.sampling import Sampling
from llm.types import ChatMessage

_HAN = re.compile(r"[\u3000-\u9fff\uf900-\ufaff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """Upper-leaning token estimate for a remote model whose tokenizer we do not have.

    BPE vocabularies average ~4 characters per English token and at most ~1 token per CJK character;
    erring high keeps prompts inside the server's context window.
    """
    cjk = len(_HAN.findall(text))
    return cjk + (len(text) - cjk + 2) // 3


class OpenAICompatGenerator:
    """``Generator`` that streams from ``<base_url>/chat/completions``."""

    model_sha256: str | None = None  # the weights live on the server; we cannot vouch for them
    think_prefilled: bool = False  # reasoning the server returns apart arrives wrapped in <think>...</think>

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        context_window: int = 4096,
        sampling: Sampling | None = None,
        loop_guard: LoopGuard | None = LoopGuard(),
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"llm.openai_base_url {base_url!r} is not an http(s) URL. Use e.g. http://gpu01:8080/v1"
            )
        path = parts.path.rstrip("/")
        if not path:
            path = "/v1"  # a bare host means the usual /v1 prefix
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._path = f"{path}/chat/completions"
        self.base_url = base_url
        self.model_name = model
        self._api_key = api_key
        self._timeout = timeout
        self._context_window = context_window
        self.sampling = sampling or Sampling()
        self.loop_guard = loop_guard

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def stream(self, messages: list[ChatMessage], max_tokens: int, temperature: float) -> AnswerStream:
        """The answer's deltas; ``finish_reason`` on the result says why it ended ("repetition": cut,
        and the connection is closed so the server stops generating)."""
        return AnswerStream(self._request(messages, max_tokens, temperature), self.loop_guard)

    def _request(
        self, messages: list[ChatMessage], max_tokens: int, temperature: float
    ) -> Generator[str, None, str | None]:
        body = json.dumps(
            {
                "model": self.model_name,
                "messages": [{"role": m.role, "content": m.content} for m in messages],
                "max_tokens": max_tokens,
                "temperature": temperature,
                "stream": True,
                **self.sampling.openai_fields(),
            },
            ensure_ascii=False,
        ).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        where = f"{self._scheme}://{self._host}{':' + str(self._port) if self._port else ''}"
        conn = self._connection()
        try:
            try:
                conn.request("POST", self._path, body=body, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise KbError(
                    f"Cannot reach the generation server at {where} ({e}). Check that it is running and "
                    "that llm.openai_base_url is right."
                ) from e
            if resp.status != 200:
                detail = resp.read(2000).decode("utf-8", errors="replace").strip()
                raise KbError(
                    f"The generation server at {where} answered HTTP {resp.status}: {detail[:300]}. "
                    + ("Check llm.openai_api_key." if resp.status in (401, 403) else
                       "Check llm.openai_model and the server's log.")
                )
            return (yield from self._deltas(resp, where))
        finally:
            conn.close()

    def _deltas(self, resp: http.client.HTTPResponse, where: str) -> Generator[str, None, str | None]:
        in_reasoning = False
        finish = None
        try:
            for event in _sse_events(resp):
                if event == "[DONE]":
                    break
                try:
                    chunk: dict[str, Any] = json.loads(event)
                except ValueError as e:
                    raise KbError(f"The generation server at {where} sent a malformed event.") from e
                if "error" in chunk:
                    raise KbError(f"The generation server at {where} reported an error: {chunk['error']}")
                choices = chunk.get("choices") or []
                if not choices:
                    continue
                finish = choices[0].get("finish_reason") or finish
                delta = choices[0].get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                content = delta.get("content")
                if reasoning:
                    if not in_reasoning:
                        in_reasoning = True
                        yield OPEN_TAG
                    yield reasoning
                if content:
                    if in_reasoning:
                        in_reasoning = False
                        yield CLOSE_TAG
                    yield content
        except TimeoutError as e:
            raise KbError(
                f"The generation server at {where} stopped sending for {self._timeout:.0f} s. "
                "It may be overloaded; try again."
            ) from e
        # A think block still open here stays open: the splitter then reports it as unclosed.
        return finish


def _sse_events(resp: http.client.HTTPResponse) -> Iterator[str]:
    """Data payloads of a text/event-stream, one per event (multi-line data joined by newlines)."""
    data: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            break
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)
