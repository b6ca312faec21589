"""OpenAI-compatible chat: ``POST /v1/chat/completions`` (plain or ``stream: true`` SSE) and ``GET /v1/models``.

The last message is the question, the ones before it the conversation. The answer runs through
app.services.qa.ask, so the caller's grants, the relevance gate, citation checks and the audit record
are exactly the UI's. kb's extras (citations, passages, refusal, audit seq) ride in a ``kb`` field
beside the standard ones; OpenAI clients keep them (``completion.model_extra["kb"]``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.auth import caller
from app.api.errors import ApiError, body
from app.errors import KbError
from app.services import answer_cache, qa
from app.services.caller import Caller

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
MODEL_ID = "kb"
MAX_MESSAGES = 100


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class KbOptions(BaseModel):
    collections: list[int] | None = Field(None, description="Ask only these of your readable collections (ids).")
    k: int | None = Field(None, ge=1, le=50, description="Passages to retrieve (default: retrieval.top_k).")


class ChatRequest(BaseModel):
    """The OpenAI request body; sampling fields (temperature, max_tokens, ...) are accepted and ignored:
    kb's answer settings are the server's, the same for every client."""

    model_config = ConfigDict(extra="allow")
    model: str = MODEL_ID
    messages: list[Message] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    kb: KbOptions | None = None


def _conversation(messages: list[Message]) -> tuple[str, list[dict[str, str]]]:
    """(question, history): the question is the last message, which must be the user's; the earlier turns
    are the conversation (qa.ask rewrites a follow-up for retrieval). System and developer messages are
    not passed on: kb's grounding rules are its own."""
    last = messages[-1]
    if last.role != "user" or not last.text.strip():
        raise ApiError(422, "invalid_request", "The last message must be the user's question (role 'user').")
    history = [{"role": m.role, "content": m.text} for m in messages[:-1]
               if m.role in ("user", "assistant") and m.text.strip()]
    return last.text, history


def extras(res: qa.AskResult) -> dict[str, Any]:
    """kb's part of a response: what the answer is based on and where it was recorded."""
    return {
        "audit_seq": res.audit_seq,
        "cached_from": res.cached_from,  # the audit record of the answer this one repeats (answer cache)
        "refused": res.refused,
        "refusal_reason": res.refusal_reason,
        "answer": res.answer,
        "citations": [{"n": c.n, "chunk_id": c.chunk_id, "document_id": c.document_id, "document": c.title,
                       "source": c.source, "position": c.position} for c in res.citations],
        "invalid_citations": res.invalid_citations,
        "passages": [{"n": i + 1, "chunk_id": p.chunk_id, "document_id": p.document_id, "collection": p.collection,
                      "document": p.title or p.source, "source": p.source, "position": p.position, "page": p.page,
                      "score": round(p.score, 4),
                      "dense_score": None if p.dense_score is None else round(p.dense_score, 4),
                      "text": p.text} for i, p in enumerate(res.passages)],
        "model": res.model,
        "condensed_question": res.condensed,  # what was searched for, when a follow-up was rewritten
        "timings": res.timings,
    }


class _Run:
    """qa.ask driven to the end in its own thread (the generator holds the model lock while it runs, so it
    must never be left half-consumed); events are handed to the event loop. ``cancel`` (client gone)
    closes the answer at the next event, which still writes its audit record."""

    def __init__(self, loop: asyncio.AbstractEventLoop, events: Callable[[], Iterator[qa.Event]],
                 on_end: Callable[[], None]):
        self._loop, self._events, self._on_end = loop, events, on_end
        self._queue: asyncio.Queue = asyncio.Queue()
        self._cancelled = threading.Event()
        threading.Thread(target=self._run, name="kb-answer", daemon=True).start()

    def _put(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the server shut down meanwhile
            self._cancelled.set()

    def _run(self) -> None:
        it = None
        try:
            it = self._events()
            for ev in it:
                self._put(("event", ev))
                if self._cancelled.is_set():
                    break
        except BaseException as exc:  # handed to the request
            self._put(("error", exc))
        finally:
            if it is not None:
                it.close()
            self._on_end()
            self._put(("end", None))

    async def next(self) -> tuple[str, Any]:
        return await self._queue.get()

    def cancel(self) -> None:
        self._cancelled.set()


def _start(request: Request, who: Caller, req: ChatRequest) -> _Run:
    state = request.app.state
    question, history = _conversation(req.messages)
    opts = req.kb or KbOptions()
    collections = set(opts.collections) if opts.collections is not None else None

    def events() -> Iterator[qa.Event]:
        for ev in qa.ask(state.container, who, question, opts.k, collections, history=history or None):
            if ev.kind == "done" and ev.result is not None:
                state.metrics.observe_answer(ev.result)
            yield ev

    slot = True
    try:
        state.slots.acquire()  # 503 when full
    except ApiError:
        # A question answered from the answer cache needs no generator: it is not turned away.
        if not answer_cache.has_answer(state.container, who, question, opts.k, collections, history or None):
            state.metrics.rejected.inc()
            raise
        slot = False
    state.metrics.pending.set(state.slots.in_use)

    def on_end() -> None:
        if slot:
            state.slots.release()
        state.metrics.pending.set(state.slots.in_use)

    return _Run(asyncio.get_running_loop(), events, on_end)


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


@router.get("/models", summary="The model kb answers as (OpenAI format)")
def models(who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "kb"}]}


@router.post("/chat/completions", summary="Answer the last user message from your documents (OpenAI format)",
             response_model=None)
async def chat_completions(req: ChatRequest, request: Request, who: Caller = Depends(caller)):
    run = _start(request, who, req)
    cid, created = _completion_id(), int(time.time())
    if req.stream:
        return await _streamed(run, cid, created)
    result = None
    started = False  # retrieval done: a failure from here on is the generator's (502), not the input's
    while True:
        kind, item = await run.next()
        if kind == "end":
            break
        if kind == "error":
            raise _generation_error(item) if started else item
        started = True
        if item.kind == "done":
            result = item.result
    if result is None:
        raise ApiError(502, "generation_failed", "The answer ended without a result; the server log has details.")
    message: dict[str, Any] = {"role": "assistant", "content": result.answer}
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    return JSONResponse({
        "id": cid, "object": "chat.completion", "created": created, "model": MODEL_ID,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 0, "completion_tokens": result.tokens, "total_tokens": result.tokens},
        "kb": extras(result),
    })


def _generation_error(exc: BaseException) -> ApiError:
    if isinstance(exc, KbError):
        return ApiError(502, "generation_failed", f"Generating the answer failed: {exc}")
    log.error("answer failed", exc_info=exc)
    return ApiError(502, "generation_failed", "Generating the answer failed; the server log has details.")


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


async def _streamed(run: _Run, cid: str, created: int) -> StreamingResponse:
    # Wait for retrieval first: an invalid question or a refused role is still a plain HTTP error.
    kind, first = await run.next()
    if kind == "error":
        raise first
    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID}

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                     **more})

    async def body_iter() -> AsyncIterator[bytes]:
        pending: list[tuple[str, Any]] = [(kind, first)]
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                k, item = pending.pop() if pending else await run.next()
                if k == "end":
                    break
                if k == "error":  # headers are sent: the error becomes the stream's last event
                    err = _generation_error(item)
                    yield _sse(body(err.status, err.kind, err.message))
                    break
                ev = item
                if ev.kind == "answer" and ev.text:
                    yield chunk({"content": ev.text})
                elif ev.kind == "reasoning" and ev.text:
                    yield chunk({"reasoning_content": ev.text}, **({"kb": {"moved": True}} if ev.moved else {}))
                elif ev.kind == "done" and ev.result is not None:
                    res = ev.result
                    yield chunk({}, "stop", kb=extras(res),
                                usage={"prompt_tokens": 0, "completion_tokens": res.tokens,
                                       "total_tokens": res.tokens})
            yield _sse("[DONE]")
        finally:
            run.cancel()

    return StreamingResponse(body_iter(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
