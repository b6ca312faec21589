"""Separate DeepSeek-R1 style ``<think>...</think>`` reasoning from the answer.

Reasoning models write their chain of thought between ``<think>`` and ``</think>`` and the answer after
it. Their chat templates often pre-fill ``<think>`` in the prompt, so the output then starts inside the
block and only the closing tag appears. A generation cut off by ``max_tokens`` may never close it.

:class:`ReasoningSplitter` works incrementally on a token stream (tags may be split across deltas);
:func:`split_reasoning` applies the same rules to a whole string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

Channel = Literal["reasoning", "answer"]


@dataclass(frozen=True)
class StreamPart:
    """A piece of output routed to one channel.

    ``moved`` is True on the one part emitted when a closing tag arrives with no opening tag after
    answer text was already emitted: that text was reasoning after all, and consumers that keep
    running totals should move it (``answer = ""; reasoning += part.text``). Consumers that re-render
    :attr:`ReasoningSplitter.answer` / :attr:`ReasoningSplitter.reasoning` need not care.
    """

    channel: Channel
    text: str
    moved: bool = False


@dataclass(frozen=True)
class ReasoningSplit:
    reasoning: str
    answer: str
    unclosed: bool  # the output ended inside a think block (e.g. max_tokens reached while reasoning)


def _held_suffix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of one of ``tags``."""
    best = 0
    for tag in tags:
        for k in range(min(len(tag) - 1, len(text)), best, -1):
            if text.endswith(tag[:k]):
                best = k
                break
    return best


class ReasoningSplitter:
    """Route streamed deltas to the reasoning or answer channel.

    ``think_prefilled``: the prompt already ends with ``<think>`` (the output starts inside the block).
    When it is False a stray ``</think>`` before any opening tag still turns everything before it into
    reasoning (see :attr:`StreamPart.moved`).
    """

    def __init__(self, think_prefilled: bool = False) -> None:
        self._in_think = think_prefilled
        self._seen_open = think_prefilled
        self._seen_close = False
        self._pending = ""  # text held back because it may be the start of a tag
        self._reasoning: list[str] = []
        self._answer: list[str] = []
        self._answer_started = False  # leading whitespace of the answer is dropped
        self._reasoning_started = False
        self._closed = False

    # -- running totals -------------------------------------------------------------------------
    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning).strip()

    @property
    def answer(self) -> str:
        return "".join(self._answer).rstrip()

    @property
    def in_reasoning(self) -> bool:
        return self._in_think

    # -- streaming ------------------------------------------------------------------------------
    def feed(self, delta: str) -> list[StreamPart]:
        """Consume one delta; return the parts that can be emitted now (possibly none)."""
        if self._closed:
            raise RuntimeError("feed() after close()")
        text = self._pending + delta
        self._pending = ""
        out: list[StreamPart] = []
        while text:
            if self._in_think:
                if not self._reasoning_started:
                    # Some models repeat the <think> their template already pre-filled.
                    head = text.lstrip()
                    if head and OPEN_TAG.startswith(head) and head != OPEN_TAG:
                        self._pending = text
                        return out
                    if head.startswith(OPEN_TAG):
                        text = head[len(OPEN_TAG) :]
                        continue
                idx = text.find(CLOSE_TAG)
                if idx < 0:
                    hold = _held_suffix(text, (CLOSE_TAG,))
                    self._emit("reasoning", text[: len(text) - hold], out)
                    self._pending = text[len(text) - hold :]
                    return out
                self._emit("reasoning", text[:idx], out)
                self._in_think = False
                self._seen_close = True
                text = text[idx + len(CLOSE_TAG) :]
            else:
                tags = (OPEN_TAG,) if self._seen_close or self._seen_open else (OPEN_TAG, CLOSE_TAG)
                hits = [(text.find(t), t) for t in tags]
                hits = [(i, t) for i, t in hits if i >= 0]
                if not hits:
                    hold = _held_suffix(text, tags)
                    self._emit("answer", text[: len(text) - hold], out)
                    self._pending = text[len(text) - hold :]
                    return out
                idx, tag = min(hits)
                if tag == OPEN_TAG:
                    self._emit("answer", text[:idx], out)
                    self._in_think = True
                    self._seen_open = True
                else:
                    # A closing tag with no opening one: the template pre-filled <think>, so all
                    # output so far was reasoning.
                    self._move_answer_to_reasoning(text[:idx], out)
                    self._seen_close = True
                text = text[idx + len(tag) :]
        return out

    def close(self) -> list[StreamPart]:
        """Flush held-back text at the end of the stream."""
        out: list[StreamPart] = []
        if self._pending:
            self._emit("reasoning" if self._in_think else "answer", self._pending, out)
            self._pending = ""
        self._closed = True
        return out

    @property
    def unclosed(self) -> bool:
        """True when the stream ended (or is now) inside a think block."""
        return self._in_think

    # -- internals ------------------------------------------------------------------------------
    def _emit(self, channel: Channel, text: str, out: list[StreamPart]) -> None:
        if not text:
            return
        if channel == "answer":
            if not self._answer_started:
                text = text.lstrip()
                if not text:
                    return
                self._answer_started = True
            self._answer.append(text)
        else:
            if not self._reasoning_started:
                text = text.lstrip()
                if not text:
                    return
                self._reasoning_started = True
            self._reasoning.append(text)
        if out and out[-1].channel == channel and not out[-1].moved:
            out[-1] = StreamPart(channel, out[-1].text + text)
        else:
            out.append(StreamPart(channel, text))

    def _move_answer_to_reasoning(self, tail: str, out: list[StreamPart]) -> None:
        moved = "".join(self._answer)
        # Parts of this same feed() call that went to the answer are folded into the move.
        out[:] = [p for p in out if p.channel != "answer"]
        self._answer.clear()
        self._answer_started = False
        text = moved + tail
        if not self._reasoning_started:
            text = text.lstrip()
        if text:
            self._reasoning_started = True
            self._reasoning.append(text)
            out.append(StreamPart("reasoning", text, moved=bool(moved)))


def split_reasoning(text: str, think_prefilled: bool = False) -> ReasoningSplit:
    """Split a complete model output into reasoning and answer (same rules as the stream splitter)."""
    splitter = ReasoningSplitter(think_prefilled=think_prefilled)
    splitter.feed(text)
    splitter.close()
    return ReasoningSplit(reasoning=splitter.reasoning, answer=splitter.answer, unclosed=splitter.unclosed)


def template_prefills_think(rendered_prompt: str) -> bool:
    """True when a rendered chat prompt ends inside an open think block (R1-style templates)."""
    tail = rendered_prompt.rstrip()
    return tail.endswith(OPEN_TAG)
