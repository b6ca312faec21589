"""The question-answer service: ACL -> hybrid search -> grounded prompt -> streamed answer -> checked
citations -> audit record. The CLI, the UI and any API call this one function."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app import accounts, audit
from app.errors import KbError
from app.services import answer_cache
from app.services.caller import Caller, actor, operator
from app.services.search import Passage, embedder_knows, hydrate, lexical_coverage, search_terms
from ingest.pii.entities import ALL_ENTITIES, placeholder
from llm.citations import attribute_citations, check_citations
from llm.condense import Condensed, condense, fallback_question
from llm.focus import focus_passages
from llm.prompt import build_messages, detect_language, strip_citations
from llm.reasoning import ReasoningSplitter
from llm.types import ChatMessage, SourcePassage

MAX_QUESTION_CHARS = 4000
# When the model wrote nothing but (hidden) reasoning or stopped at once: say so rather than show a blank.
EMPTY_ANSWER = {
    "en": "The model returned no answer text. Ask again, or rephrase the question.",
    "zh": "模型没有给出回答。请重试，或换一种问法。",
}
ECHOED_QUESTION = {
    "en": "The model repeated the question instead of answering it. Read the sources, or rephrase the question.",
    "zh": "模型只复述了问题，没有回答。请查看资料，或换一种问法。",
}
NO_BASIS = {
    "en": "I have no basis to answer this from the documents you can access.",
    "zh": "根据您有权访问的文档，我无法回答这个问题。",
}
# What the model is told to say when its sources do not hold the answer: the system prompt (llm/prompt.py,
# rule 3) must quote exactly these sentences, and tests/app/test_eval_answers.py checks that it does.
NOT_IN_SOURCES = {
    "en": "The documents do not contain the answer.",
    "zh": "文档中没有找到答案。",
}
# How models actually word that (they paraphrase the sentence they were given): any of these, in either
# language, makes an answer a decline. `kb eval answers` counts refusals with it.
_DECLINES = re.compile("|".join([
    r"\b(?:documents?|sources?|passages?|context|(?:provided |given )?(?:text|information))\s+(?:do|does|did)\s*"
    r"(?:not|n't)\s+(?:\w+\s+)?(?:contain|mention|say|provide|include|specify|state|give|tell|have|discuss|"
    r"address|answer)",
    r"\b(?:there is|there's|there are|i have|i found)\s+no\s+(?:mention|information|answer|basis)",
    r"\bnot\s+(?:mentioned|stated|specified|provided|found|given|answered)\s+in\s+(?:the|any)\s+"
    r"(?:documents?|sources?|passages?|text|context)",
    r"\bi\s+(?:do not|don't|cannot|can't)\s+(?:know|answer|find)\b",
    r"(?:文档|资料|来源|材料|文中|原文)[中里]?(?:并|均|都)?(?:没有|未|不)(?:找到|提到|提及|包含|说明|给出|涉及|记载|相关)",
    r"没有找到(?:答案|相关)", r"无法(?:回答|确定|找到|得知)", r"(?:我)?不知道", r"没有相关(?:信息|内容|资料)",
]), re.IGNORECASE)


def declines(answer: str) -> bool:
    """Whether an answer says the sources do not hold the answer (kb's own refusal, or the model's)."""
    text = " ".join(answer.split())
    return any(p in text for p in (*NO_BASIS.values(), *NOT_IN_SOURCES.values())) or bool(_DECLINES.search(text))


# The placeholders the scrubber leaves in the text (as the model repeats them) -> their type.
_PLACEHOLDERS = {placeholder(e): e for e in ALL_ENTITIES}
_PLACEHOLDER = re.compile("|".join(map(re.escape, _PLACEHOLDERS)))


def scrubbed_in(answer: str) -> list[str]:
    """The personal-data types whose placeholders (``<PERSON>``...) the answer repeats, in order: what the
    documents said there was removed when they were indexed, and the person asking should be told so."""
    return list(dict.fromkeys(_PLACEHOLDERS[m] for m in _PLACEHOLDER.findall(answer)))


def _bare(text: str) -> str:
    return "".join(ch for ch in strip_citations(text).casefold() if ch.isalnum())


def echoes(answer: str, question: str) -> bool:
    """Whether the answer is only the question again (its letters and digits, markers and punctuation aside)."""
    bare = _bare(answer)
    return bool(bare) and bare == _bare(question)


@dataclass
class Citation:
    n: int
    chunk_id: int
    document_id: int
    title: str
    source: str
    position: str


@dataclass
class AskResult:
    question: str
    answer: str = ""
    reasoning: str = ""
    refused: bool = False
    refusal_reason: str | None = None
    citations: list[Citation] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    attributed: list[int] = field(default_factory=list)  # cited by kb's check, not written by the model
    passages: list[Passage] = field(default_factory=list)
    read: list[str] = field(default_factory=list)  # what the model read of each passage (focused, truncated)
    timings: dict[str, float | None] = field(default_factory=dict)
    tokens: int = 0
    model: str | None = None
    model_sha256: str | None = None
    audit_seq: int | None = None
    condensed: str | None = None  # the standalone question retrieval used (None: no history, none needed)
    condense_method: str = "none"  # none | standalone | model | fallback (see llm.condense)
    # stop | length | repetition (the loop guard cut it) | echo (only the question again) | None: no generation
    finish_reason: str | None = None
    repetition: dict[str, Any] | None = None  # what the loop guard cut, when it did
    cached_from: int | None = None  # audit seq of the answer this one repeats (app.services.answer_cache)


@dataclass
class Event:
    """A step of a streamed answer: condensed (text: the standalone question searched for, only with
    history) | passages (result: the answer so far, its passages found) | reasoning | answer | done."""

    kind: str
    text: str = ""
    result: AskResult | None = None
    moved: bool = False  # a reasoning part that was first shown as answer (R1 without an opening tag)


def caller_for(container, user_name: str | None, client: str) -> Caller:
    """The caller's identity and readable collections; None user = the server operator (CLI only)."""
    if user_name is None:
        return operator(client)
    with container.sessions() as s:
        user = accounts.get_user(s, user_name)
        if user.disabled:
            raise KbError(f"User {user_name!r} is disabled.")
        return Caller(user.name, user.role, client, frozenset(accounts.readable_collection_ids(s, user)))


log = logging.getLogger(__name__)
MAX_HISTORY_MESSAGES = 20  # the most recent turns kept; the prompt budget usually takes fewer
MAX_HISTORY_CHARS = 8000  # per message: a turn longer than this is cut
_ROLES = ("user", "assistant", "system")


def parse_history(history: Any) -> list[ChatMessage]:
    """Earlier turns as OpenAI-style messages: a list of ``{"role", "content"}`` objects, or an object
    with a "messages" list. Roles user and assistant are kept, system messages are accepted and ignored
    (a caller does not get to instruct the model), content is a string or a list of text parts."""
    if history is None:
        return []
    if isinstance(history, dict):
        if "messages" not in history:
            raise KbError('The history must be a list of messages or an object with a "messages" list.')
        history = history["messages"]
    if not isinstance(history, list | tuple):
        raise KbError(f"The history must be a list of messages, not {type(history).__name__}.")
    out: list[ChatMessage] = []
    for i, m in enumerate(history, 1):
        if isinstance(m, ChatMessage):
            role, content = m.role, m.content
        elif isinstance(m, dict):
            role, content = m.get("role"), m.get("content")
        else:
            raise KbError(f'History message {i} must be an object with "role" and "content", '
                          f"not {type(m).__name__}.")
        if role not in _ROLES:
            raise KbError(f"History message {i} has the unknown role {role!r}: use user or assistant.")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise KbError(f"History message {i}: only text content is supported.")
            content = "\n".join(p["text"] for p in content)
        if content is None and role == "assistant":
            content = ""
        if not isinstance(content, str):
            raise KbError(f'History message {i} needs a text "content".')
        if role != "system" and content.strip():
            out.append(ChatMessage(role, content.strip()[:MAX_HISTORY_CHARS]))
    return out[-MAX_HISTORY_MESSAGES:]


def _condense(container, res: AskResult, turns: list[ChatMessage]) -> str:
    """The standalone question for retrieval (llm.condense); the question as asked when that fails."""
    t = time.perf_counter()
    try:
        c = condense(container.generator.stream, turns, res.question)
    except Exception:  # no model, a full context: search with the previous question too; answering says why
        log.warning("condensing the follow-up failed", exc_info=True)
        c = Condensed(fallback_question(turns, res.question), "fallback")
    res.condensed, res.condense_method = c.question, c.method
    res.timings["condense_ms"] = round((time.perf_counter() - t) * 1000, 1)
    return c.question


def _relevant_to_a_part(passages: list[Passage], question: str, turns: list[ChatMessage], r) -> list[Passage]:
    """A fallback search joins the previous question and the follow-up; a word-overlap gate asks a passage
    to hold half the words of both. Passages relevant to the follow-up alone, or else to the previous
    question alone (the topic of the conversation), pass as well."""
    previous = next((m.content for m in reversed(turns) if m.role == "user"), "")
    for part in (question, previous):
        if part:
            relevant, _ = _relevant(passages, part, r)
            if relevant:
                return relevant
    return []


def ask(container, caller: Caller, question: str, k: int | None = None,
        collections: set[int] | None = None, history: Any = None) -> Iterator[Event]:
    """Stream the answer to ``question`` as events; the last event is ``done`` with the full result.

    ``history``: the conversation so far as OpenAI-style messages (see :func:`parse_history`). A
    follow-up is then rewritten into a standalone question for retrieval and the relevance gate; the
    answer prompt gets the question as asked plus the recent turns."""
    s_ret, s_llm = container.settings.retrieval, container.settings.llm
    k = k or s_ret.top_k
    res = AskResult(question=printable(question).strip())
    t0 = time.perf_counter()
    allowed = caller.collection_ids
    if collections is not None:
        allowed = frozenset(collections if allowed is None else set(allowed) & set(collections))
    outcome, error, started = "ok", None, None
    cache_key = None
    try:
        turns = parse_history(history)
        _check_question(question)
        question = question.strip()
        cache_key = answer_cache.key_for(container, question, turns, allowed, k)
        if answer_cache.fill(container, cache_key, res):  # asked before, against this index and model: no work
            outcome = "refused" if res.refused else "ok"  # to interrupt, so one record, before the answer shows
            res.timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            _record(container, caller, res, outcome, None)
            yield from _replay(res)
            yield Event("done", result=res)
            return
        # Written before any work, in its own transaction, so a question the server dies on still leaves a
        # record: a "started" record with no final one after it is an interrupted question.
        started = _record_start(container, caller, res)
        searched = question
        if turns:
            searched = _condense(container, res, turns)
            yield Event("condensed", searched)
        hits = container.search_index.search(searched, k, None if allowed is None else set(allowed))
        with container.sessions() as s:
            res.passages = hydrate(container, s, hits)
        res.timings["retrieval_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        yield Event("passages", result=res)  # the sources, shown while the answer is written
        relevant, why_not = _relevant(res.passages, searched, s_ret)
        if not relevant and res.condense_method == "fallback":
            relevant = _relevant_to_a_part(res.passages, question, turns, s_ret)
        if not relevant:
            res.refused = True
            res.refusal_reason = why_not
            res.answer = NO_BASIS[detect_language(question)]
            outcome = "refused"
            yield Event("answer", res.answer)
        else:
            res.passages = relevant  # the search's top passages, once the gate let the question through
            yield from _generate(container, res, s_llm, t0, turns)
    except GeneratorExit:  # the consumer went away mid-answer (a closed browser tab, a dropped HTTP client)
        outcome, error = "cancelled", "The answer was not delivered: the client stopped reading."
        raise
    except KbError as exc:
        outcome, error = "error", str(exc)
        raise
    except Exception as exc:
        outcome, error = "error", f"{type(exc).__name__}"
        raise
    finally:
        if res.audit_seq is None:  # a cached answer has its record already
            res.timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            _record(container, caller, res, outcome, error, started)
    answer_cache.store(container, cache_key, res)
    yield Event("done", result=res)


def _replay(res: AskResult) -> Iterator[Event]:
    """The events of a cached answer, in the order a generated one streams them."""
    if res.condensed is not None:
        yield Event("condensed", res.condensed)
    yield Event("passages", result=res)
    if res.reasoning:
        yield Event("reasoning", res.reasoning)
    yield Event("answer", res.answer)


def printable(text: str) -> str:
    """``text`` with what cannot be stored as UTF-8 (lone surrogates: bytes that were not UTF-8, as
    Python decodes a command line) shown as escapes, so even a refused question can be recorded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_question(question: str) -> None:
    if not isinstance(question, str):
        raise KbError(f"The question must be text, not {type(question).__name__}.")
    if printable(question) != question:
        raise KbError("The question is not valid UTF-8 text (it holds bytes of another encoding). "
                      "Save or type it as UTF-8 and ask again.")
    if not question.strip():
        raise KbError("The question is empty.")
    if len(question.strip()) > MAX_QUESTION_CHARS:
        raise KbError(f"The question is too long ({len(question.strip()):,} characters; at most "
                      f"{MAX_QUESTION_CHARS:,}). Shorten it or ask about one part at a time.")


def _relevant(passages: list[Passage], question: str, r) -> tuple[list[Passage], str | None]:
    """The relevance gate: whether the passages found are about the question at all, and if not, why, in
    plain words naming the gates that applied.

    kb answers when its best passage is similar enough to the question (dense similarity at least
    ``retrieval.min_score``, ``min_score_zh`` for Chinese, where the embedder knows the question's language and
    dense search is on) or shares enough of its words (``retrieval.min_coverage``, always). Then the model gets
    the search's top passages as ranked, not only those that passed: the passage holding the answer is often
    weaker on one signal than its neighbours (on CMRC2018, dropping the passages under the word-overlap bar lost
    the answer for 7% of the questions; on SQuAD 2.0, dropping those under the similarity bar 2%), and whether
    on-topic sources actually answer is for the model, told to say so when they do not, to judge. So the gate
    only stops questions the collections are not about.

    Of the passages after the first, those about nothing in the question (no word shared with it and a dense
    similarity under half the gate, as a filler from another language or topic has) are left out: a small
    model given them declines questions its first passage answers. On SQuAD and CMRC2018 (300 questions each)
    this left out no passage at all."""
    if not passages:
        return [], "No passages were found in the collections you can read."
    dense = r.mode != "bm25" and embedder_knows(r, question)
    gate = r.gate_for(detect_language(question))  # calibrated per embedder and language (docs/benchmarks.md)
    coverage = [lexical_coverage(question, p.text) for p in passages]
    on_topic = [p for i, p in enumerate(passages)
                if i == 0 or coverage[i] > 0 or (dense and (p.dense_score or 0.0) >= gate / 2)]
    if dense:
        best = max((p.dense_score or 0.0) for p in passages)
        if best >= gate:
            return on_topic, None
    overlap = max(coverage)
    if overlap >= r.min_coverage:
        return on_topic, None
    words = f"{overlap:.0%} of them; {r.min_coverage:.0%} needed"
    if len(passages) == 1:
        return [], ((f"The passage found is not similar enough to the question ({best:.2f}; {gate:.2f} "
                     f"needed) and does not share enough of its words ({words}).") if dense else
                    f"The passage found does not share enough of the question's words ({words}).")
    return [], ((f"None of the {len(passages)} passages found is similar enough to the question (closest: "
                 f"{best:.2f}; {gate:.2f} needed) or shares enough of its words (best: {words}).") if dense
                else f"None of the {len(passages)} passages found shares enough of the question's words "
                     f"(best: {words}).")


def prompt_for(container, res: AskResult, history: list[ChatMessage] | None = None) -> list[ChatMessage]:
    """The messages the model gets for ``res``'s question and passages; ``res.passages`` is cut to those the
    context window holds."""
    gen, s_llm = container.generator, container.settings.llm
    # the model reads each passage's sentences about the question (what was searched for); people see it whole
    texts = focus_passages(res.condensed or res.question, [p.text for p in res.passages], search_terms,
                           gen.count_tokens, s_llm.passage_tokens, s_llm.first_passage_tokens)
    sources = [SourcePassage(n=i + 1, text=t, title=p.title or p.source, source=p.source, page=p.page,
                             sheet=p.sheet, heading=p.heading)
               for i, (p, t) in enumerate(zip(res.passages, texts, strict=True))]
    messages, used = build_messages(res.question, sources, gen.count_tokens, gen.context_window, s_llm.max_tokens,
                                    history=history or (), best_last=s_llm.best_passage_last)
    res.passages, res.read = res.passages[: len(used)], [p.text for p in used]
    return messages


def _generate(container, res: AskResult, s_llm, t0: float, history: list[ChatMessage] | None = None
              ) -> Iterator[Event]:
    gen = container.generator
    res.model, res.model_sha256 = gen.model_name, gen.model_sha256
    messages = prompt_for(container, res, history)
    splitter = ReasoningSplitter(gen.think_prefilled)
    t_gen = time.perf_counter()
    first = None
    stream = gen.stream(messages, s_llm.max_tokens, s_llm.temperature)
    for delta in stream:
        if first is None:
            first = time.perf_counter()
            res.timings["first_token_ms"] = round((first - t0) * 1000, 1)
        res.tokens += 1
        for part in splitter.feed(delta):
            yield Event(part.channel, part.text, moved=part.moved)
    for part in splitter.close():
        yield Event(part.channel, part.text, moved=part.moved)
    res.model, res.model_sha256 = gen.model_name, gen.model_sha256  # a failover pool: the one that answered
    end = time.perf_counter()
    if first is not None and res.tokens > 1 and end > first:
        res.timings["tokens_per_s"] = round((res.tokens - 1) / (end - first), 1)
    res.timings["generation_ms"] = round((end - t_gen) * 1000, 1)
    res.reasoning = splitter.reasoning
    res.finish_reason = stream.finish_reason
    if stream.repetition is not None:
        r = stream.repetition
        res.repetition = {"kind": r.kind, "copies": r.copies, "dropped_chars": r.dropped_chars}
    if not splitter.answer.strip():
        res.answer = EMPTY_ANSWER[detect_language(res.question)]
        yield Event("answer", res.answer)
        return
    if echoes(splitter.answer, res.question):  # a small model's habit; shown as an answer it reads as one
        res.answer, res.finish_reason = ECHOED_QUESTION[detect_language(res.question)], "echo"
        return
    res.answer, cited, res.invalid_citations = check_citations(splitter.answer.strip(), len(res.passages))
    res.answer, attributed = attribute_citations(res.answer, [p.text for p in res.passages])
    res.attributed = attributed
    for n in sorted(set(cited) | set(attributed), key=lambda n: (cited + attributed).index(n)):
        p = res.passages[n - 1]
        res.citations.append(Citation(n, p.chunk_id, p.document_id, p.title or p.source, p.source, p.position))


def _record_start(container, caller: Caller, res: AskResult) -> int:
    with container.sessions.begin() as s:
        rec = audit.append(s, container.vault, kind="query", action="ask.start", outcome="started",
                           actor=actor(caller), sealed={"question": res.question})
        return rec.seq


def _record(container, caller: Caller, res: AskResult, outcome: str, error: str | None,
            started: int | None = None) -> None:
    details: dict[str, Any] = {
        "retrieved": [{"chunk_id": p.chunk_id, "document_id": p.document_id, "score": round(p.score, 4),
                       "dense": None if p.dense_score is None else round(p.dense_score, 4)} for p in res.passages],
        "citations": [c.n for c in res.citations], "cited_chunks": [c.chunk_id for c in res.citations],
        "invalid_citations": res.invalid_citations, "refused": res.refused, "model": res.model,
        "model_sha256": res.model_sha256, "timings": res.timings, "tokens": res.tokens,
        "finish_reason": res.finish_reason,
    }
    if started is not None:
        details["started_seq"] = started
    if res.repetition:
        details["repetition"] = res.repetition
    if res.condense_method != "none":
        details["condense"] = res.condense_method
    if res.cached_from is not None:
        details["cached"], details["cached_from"] = True, res.cached_from
    sealed = {"question": res.question, "answer": res.answer, "refusal_reason": res.refusal_reason,
              "error": error}  # reasoning is deliberately not logged as the answer
    if res.condensed is not None:
        sealed["condensed_question"] = res.condensed  # what retrieval searched for, beside what was asked
    with container.sessions.begin() as s:
        rec = audit.append(s, container.vault, kind="query", action="ask", outcome=outcome,
                           actor=actor(caller), details=details, sealed=sealed)
        res.audit_seq = rec.seq


def ask_blocking(container, caller: Caller, question: str, k: int | None = None,
                 history: Any = None) -> AskResult:
    result = None
    for ev in ask(container, caller, question, k, history=history):
        if ev.kind == "done":
            result = ev.result
    assert result is not None
    return result
