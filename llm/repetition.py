"""Stop a generation that loops, and keep one copy of what it repeated.

Small models at low temperature fall into loops: "A petting zoo with a cat [1]." a dozen times, or one
Chinese sentence twenty times until ``max_tokens``. :class:`RepetitionGuard` watches the streamed text
and cuts it when either

* the tail is a *tandem repeat*: one unit (any characters, so Chinese needs no word splitting)
  written ``min_repeats`` times in a row, covering at least ``min_run_weight`` word characters; or
* a *sentence or line* (compared without list numbering, citation markers, case and spacing) comes
  back ``min_repeats`` times within a run of sentences that all repeat earlier ones (the numbered
  variant, "1. X\\n2. X\\n3. X", which is not an exact tandem repeat).

Word characters weigh 1 (Latin letters, digits) or 3 (CJK, kana, hangul: about one token each), and
punctuation, spaces and symbols weigh nothing, so table rules ("|---|---|"), dot leaders, repeated
citation markers ("[1]") and table rows that merely share words never make a loop (only a run of
``min_symbol_run`` such characters does: a model emitting newlines until ``max_tokens``).

The guard never lets out text it may later cut: characters that repeat what came just before are held
back until the repetition breaks (then they are released) or becomes a loop (then they are dropped).
Everything emitted is therefore a prefix of the final answer, and the kept answer ends with the first
copy of the repeated unit.

:class:`AnswerStream` applies the guard to any iterator of deltas and records why the stream ended
(``finish_reason``: "stop", "length", "repetition"); both generator backends return one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from app.settings import LlmSettings

REPETITION = "repetition"

# Citation markers ([1], [2, 3], ［1］) and leading list markers ("1.", "2)", "-", "•", "（3）").
_MARKER = re.compile(r"[\[［]\s*\d{1,3}(?:\s*[,，、\-–]\s*\d{1,3})*\s*[\]］]")
_LEAD = re.compile(r"^[\s\-*•+>#|]*(?:(?:\d{1,3}|[a-zA-Z])[.)、．]\s+|[（(]\d{1,3}[)）]\s*|\d{1,3}、\s*)?")
_LIST_MARKER_SO_FAR = re.compile(r"[\s\-*•+>#|]*(?:\d{1,3}|[a-zA-Z])?[.)、．]?\s*")
_OPEN_MARKER = re.compile(r"[\[［][\d\s,，、]*$")  # a citation marker still being written
_EDGE = " \t\r\n.,;:!?。，、；：！？…·|\"'“”‘’()（）"
_SENTENCE_END = ".!?"
_CJK_END = "。！？；\n"


def char_weight(ch: str) -> int:
    """1 for a Latin letter or digit, 3 for a CJK/kana/hangul character, 0 for anything else."""
    if not ch.isalnum():
        return 0
    return 3 if ord(ch) >= 0x2E80 else 1


def weight(text: str) -> int:
    return sum(char_weight(c) for c in text)


def normalize_segment(text: str) -> str:
    """A sentence or line as the loop check compares it."""
    s = _MARKER.sub(" ", text)
    s = _LEAD.sub("", s)
    return " ".join(s.split()).lower().strip(_EDGE)


@dataclass(frozen=True)
class LoopGuard:
    """Thresholds of the repetition stop (the defaults are what kb uses; see docs/benchmarks.md)."""

    min_repeats: int = 3  # copies of a unit, the first included, that make a loop
    min_run_weight: int = 48  # word characters a tandem run must cover (short units need more copies)
    min_segment_weight: int = 12  # a sentence/line lighter than this never counts as a repeat
    max_period: int = 400  # longest unit, in characters, the tandem check looks for
    min_symbol_run: int = 240  # characters of repeated punctuation/spaces/newlines that make a loop

    @classmethod
    def from_settings(cls, cfg: LlmSettings) -> LoopGuard | None:
        """``llm.loop_guard`` off gives None (no guard)."""
        return cls(min_repeats=cfg.loop_min_repeats) if cfg.loop_guard else None


@dataclass(frozen=True)
class Repetition:
    """What the guard cut: the repeated unit, how many copies it saw, where the kept text ends."""

    kind: str  # "tandem" | "sentence"
    unit: str
    copies: int
    kept_chars: int  # the answer is text[:kept_chars]
    dropped_chars: int  # generated characters that were dropped


class RepetitionGuard:
    """Incremental loop detector. :meth:`feed` returns the text that is safe to emit."""

    def __init__(self, config: LoopGuard | None = None) -> None:
        self.config = config or LoopGuard()
        self._chars: list[str] = []
        self._codes = np.zeros(1024, dtype=np.int32)
        self._cum = [0]  # cumulative weights: _cum[i] = weight(text[:i])
        p = self.config.max_period
        self._run = np.zeros(p, dtype=np.int32)  # _run[p-1]: trailing chars equal to the char p before
        self._periods = np.arange(1, p + 1, dtype=np.int32)
        self._emitted = 0
        self._text = ""
        # sentence/line segments
        self._seg_start = 0
        self._scan = 0
        self._seen: Counter[str] = Counter()
        self._chain_start: int | None = None  # start of the run of segments that all repeat earlier ones
        self._chain: Counter[str] = Counter()
        self.repetition: Repetition | None = None

    @property
    def text(self) -> str:
        """Everything fed so far (cut or not)."""
        return self._text

    @property
    def emitted(self) -> int:
        return self._emitted

    # -- public ------------------------------------------------------------------------------------
    def feed(self, delta: str) -> str:
        """Add generated text; return the part that can be shown now ("" while held back or after a cut)."""
        if self.repetition is not None or not delta:
            return ""
        found: list[Repetition] = []
        for ch in delta:
            rep = self._push(ch)
            if rep is not None:
                found.append(rep)
                break  # nothing after the loop's third copy matters
        self._text += delta[: len(self._chars) - len(self._text)]
        rep = self._segments()
        if rep is not None:
            found.append(rep)
        if found:
            return self._cut(min(found, key=lambda r: r.kept_chars))
        release = min(self._tandem_release(), self._segment_release())
        return self._release(release)

    def finish(self) -> str:
        """The stream ended: release whatever was still held back (unless it was cut)."""
        if self.repetition is not None:
            return ""
        return self._release(len(self._text), final=True)

    # -- tandem repeats --------------------------------------------------------------------------
    def _push(self, ch: str) -> Repetition | None:
        i = len(self._chars)
        self._chars.append(ch)
        if i >= len(self._codes):
            self._codes = np.concatenate([self._codes, np.zeros_like(self._codes)])
        code = ord(ch)
        self._codes[i] = code
        self._cum.append(self._cum[-1] + char_weight(ch))
        p_max = self.config.max_period
        k = min(i, p_max)
        if k:
            # previous[p-1] = text[i-p] for p = 1..k
            previous = self._codes[i - k : i][::-1]
            same = previous == code
            self._run[:k] = np.where(same, self._run[:k] + 1, 0)
        if k < p_max:
            self._run[k:] = 0
        return self._tandem_cut()

    def _tandem_cut(self) -> Repetition | None:
        cfg = self.config
        run, periods = self._run, self._periods
        firing = np.nonzero(run >= (cfg.min_repeats - 1) * periods)[0]
        if not len(firing):
            return None
        n = len(self._chars)
        best: tuple[int, int] | None = None  # (kept end, period)
        for idx in firing:
            p, r = int(periods[idx]), int(run[idx])
            start = n - r - p
            if self._cum[start + p] == self._cum[start]:
                # a unit of punctuation/spaces only: rules and dot leaders are fine, pages of them are not
                if r + p < cfg.min_symbol_run:
                    continue
            elif self._cum[n] - self._cum[start] < cfg.min_run_weight:
                continue
            kept = n - r
            if best is None or kept < best[0]:
                best = (kept, p)
        if best is None:
            return None
        kept, p = best
        copies = (n - kept) // p + 1
        kept += self._phase(kept - p, p, n)
        unit = "".join(self._chars[kept - p : kept])
        return Repetition("tandem", unit, copies, kept, n - kept)

    def _phase(self, start: int, p: int, n: int) -> int:
        """How far to move the end of the kept copy so it ends a sentence, not mid-way through one.

        The run is found from where the periodicity begins, which can be a few characters before the
        first copy's real start ("Fridays [1]. X [1]. X [1]. X [1].": the unit is " [1]. X").
        """
        chars = self._chars
        for shift in range(min(p, n - start - p)):
            end = start + p + shift  # the kept text would be chars[:end]
            if chars[end - 1] in _CJK_END or (chars[end - 1] in _SENTENCE_END and chars[end].isspace()):
                return shift
        return 0

    def _tandem_release(self) -> int:
        return len(self._chars) - int(self._run.max(initial=0))

    # -- repeated sentences / lines ---------------------------------------------------------------
    def _segments(self) -> Repetition | None:
        text = self._text
        i = self._scan
        while i < len(text):
            ch = text[i]
            end = None
            if ch in _CJK_END:
                end = i + 1
            elif ch in _SENTENCE_END:
                if i + 1 >= len(text):
                    break  # need the next character to know
                # "2. " opening a list item and "e.g. " do not end a sentence
                if text[i + 1].isspace() and weight(normalize_segment(text[self._seg_start : i + 2])) >= 2:
                    end = i + 1
            i += 1
            if end is not None:
                rep = self._close_segment(self._seg_start, end)
                self._seg_start = end
                if rep is not None:
                    self._scan = i
                    return rep
        self._scan = i
        return None

    def _close_segment(self, start: int, end: int) -> Repetition | None:
        raw = self._text[start:end]
        key = normalize_segment(raw)
        if weight(key) < self.config.min_segment_weight:
            return None  # too light to judge: neither extends nor breaks a run
        self._seen[key] += 1
        if self._seen[key] == 1:
            self._chain_start = None
            self._chain.clear()
            return None
        if self._chain_start is None:
            self._chain_start = start + (len(raw) - len(raw.lstrip()))
        self._chain[key] += 1
        if self._chain[key] + 1 >= self.config.min_repeats:
            kept = self._chain_start
            return Repetition("sentence", raw.strip(), self._seen[key], kept, len(self._text) - kept)
        return None

    def _segment_release(self) -> int:
        if self._chain_start is not None:
            return self._chain_start
        # The sentence being written may be starting to repeat an earlier one: hold it while it does.
        partial = self._text[self._seg_start :]
        if self._seen:
            key = normalize_segment(_OPEN_MARKER.sub("", partial))
            if _LIST_MARKER_SO_FAR.fullmatch(partial) or any(k.startswith(key) for k in self._seen):
                return self._seg_start + (len(partial) - len(partial.lstrip()))
        return len(self._text)

    # -- output ------------------------------------------------------------------------------------
    def _release(self, upto: int, final: bool = False) -> str:
        if upto <= self._emitted:
            return ""
        out = self._text[self._emitted : upto]
        if not final:
            out = out.rstrip()  # trailing spaces go out with what follows them (or are cut with it)
        self._emitted += len(out)
        return out

    def _cut(self, pending: Repetition) -> str:
        kept = max(pending.kept_chars, self._emitted)
        # End the kept text cleanly: no trailing spaces or a dangling list marker of the next copy.
        tail = self._text[self._emitted : kept]
        out = tail.rstrip()
        self._emitted += len(out)
        self.repetition = Repetition(pending.kind, pending.unit, pending.copies, self._emitted,
                                     len(self._text) - self._emitted)
        return out


class AnswerStream(Iterator[str]):
    """An iterator of answer deltas with the loop guard applied and the reason it ended recorded.

    ``deltas`` is the backend's raw stream; a generator may ``return`` its finish reason ("stop",
    "length"). After iteration, :attr:`finish_reason` is that reason, or "repetition" when the guard
    cut the answer (then :attr:`repetition` says what repeated and the backend's stream is closed, so
    generation stops).
    """

    def __init__(self, deltas: Iterable[str], guard: LoopGuard | None = LoopGuard()) -> None:
        self._raw = iter(deltas)
        self._guard = RepetitionGuard(guard) if guard is not None else None
        self._done = False
        self.finish_reason: str | None = None
        self.text = ""  # everything yielded so far

    @property
    def repetition(self) -> Repetition | None:
        return self._guard.repetition if self._guard else None

    @property
    def generated(self) -> str:
        """Everything the backend produced up to the end or the cut (the dropped repeats included)."""
        return self._guard.text if self._guard else self.text

    @property
    def cut(self) -> bool:
        return self.finish_reason == REPETITION

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        while not self._done:
            try:
                delta = next(self._raw)
            except StopIteration as stop:
                self._done = True
                self.finish_reason = self.finish_reason or (stop.value if isinstance(stop.value, str) else "stop")
                out = self._guard.finish() if self._guard else ""
                if out:
                    self.text += out
                    return out
                break
            if self._guard is None:
                out = delta
            else:
                out = self._guard.feed(delta)
                if self._guard.repetition is not None:
                    self.finish_reason = REPETITION
                    self.close()
            if out:
                self.text += out
                return out
        raise StopIteration

    def close(self) -> None:
        """Stop the backend's stream (a consumer that leaves early should call this, or let it be collected)."""
        self._done = True
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


def guarded(deltas: Iterable[str], guard: LoopGuard | None = LoopGuard()) -> AnswerStream:
    """Wrap any stream of deltas (a backend, a fake) in the loop guard."""
    return deltas if isinstance(deltas, AnswerStream) else AnswerStream(deltas, guard)


def cut_repetition(text: str, guard: LoopGuard | None = None) -> tuple[str, Repetition | None]:
    """The whole-string form: the text as the guard would have let it out, and what it cut."""
    g = RepetitionGuard(guard)
    out = g.feed(text)
    out += g.finish()
    return out, g.repetition
