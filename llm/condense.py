"""Follow-up questions rewritten into standalone ones, so retrieval sees what "the second one" means.

The model is asked for one short line at temperature 0; its output is checked (one line, not too long,
in the follow-up's language, made of words the conversation actually used) and replaced by a plain
concatenation of the last user question and the follow-up when the check fails. Small models rewrite
poorly, and a bad rewrite would send retrieval to the wrong document, so the fallback is the safe side:
the previous question carries the topic, the follow-up what is asked about it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from llm.prompt import Language, detect_language, neutralize, strip_citations
from llm.types import ChatMessage

CONDENSE_MAX_TOKENS = 64
MAX_CONDENSED_CHARS = 300  # a standalone question, not a paragraph
HISTORY_TURNS = 3  # user/assistant pairs shown to the condenser
TURN_CHARS = 400  # each shown turn is cut to this many characters
MIN_GROUNDED = 0.6  # share of the rewrite's words that must come from the conversation

Method = Literal["none", "standalone", "model", "fallback"]

SYSTEM_EN = (
    "You rewrite the last question of a conversation so that it can be understood on its own. Replace "
    "words like it, they, that, this one or the second one with the thing they refer to. Keep the meaning; "
    "do not answer the question. Reply with the rewritten question only, in English, on one line."
)
SYSTEM_ZH = (
    "你把对话中的最后一个问题改写成不看对话也能看懂的独立问题。把“它”“这个”“那个”“第二个”等指代词换成"
    "它们所指的事物。保持原意，不要回答问题。只输出改写后的问题，用简体中文，写成一行。"
)
_LABELS = {
    "en": ("Conversation:", "User", "Assistant", "Last question:", "Standalone question:"),
    "zh": ("对话：", "用户", "助手", "最后一个问题：", "独立问题："),
}

_EXAMPLE: dict[str, tuple[list[ChatMessage], str, str]] = {
    "en": ([ChatMessage("user", "Which two certificates does the HR office issue?"),
            ChatMessage("assistant", "It issues an employment certificate and a salary certificate.")],
           "How do I request the second one?", "How do I request a salary certificate from the HR office?"),
    "zh": ([ChatMessage("user", "人事处开具哪两种证明？"),
            ChatMessage("assistant", "人事处开具在职证明和收入证明。")],
           "第二个怎么申请？", "人事处的收入证明怎么申请？"),
}

# Labels a small model likes to repeat before (or instead of) the question.
_PREFIX = re.compile(
    r"^\s*(?:[-*>#]+\s*)?(?:\*\*)?(?:standalone question|rewritten question|rewritten|question|last question|"
    r"follow[- ]?up(?: question)?|user|assistant|answer|独立问题|改写后的问题|改写后|问题|最后一个问题|用户|助手)"
    r"\s*(?:\*\*)?\s*[:：]\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’「」『』`*"
_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"[A-Za-z0-9]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# A few glue words a rewrite may add without the conversation having used them.
_GLUE = {"what", "about", "the", "and", "how", "does", "do", "is", "are", "for", "of", "a", "an", "to", "in",
         "on", "with", "which", "who", "when", "where", "why", "can", "i", "it", "that", "this", "there",
         "many", "much", "be", "was", "were", "or", "its", "their", "by", "at", "from", "as", "than", "one",
         "ones", "first", "second", "third", "last", "other", "former", "latter", "then", "also", "so", "please",
         "tell", "me", "more", "they", "them", "those", "these", "you", "your", "my", "we", "our",
         *"吗呢的是什么怎多少了和在有吧哪个些那这样如何请问第一二三四五六七八九十"}  # Han: one word a character


# Words that point back into the conversation; a question with none of them and enough words of its own is
# taken as standalone and searched as asked, without a model call.
_REFERS_EN = {"it", "its", "they", "them", "their", "theirs", "that", "those", "this", "these", "one", "ones",
              "second", "third", "former", "latter", "other", "others", "same", "there", "he", "she", "him",
              "her", "his", "else", "such", "above", "previous"}
_LEADS_EN = ("and", "but", "also", "so", "then", "or", "what about", "how about", "and what", "why not")
_REFERS_ZH = ("它", "这", "那", "其", "该", "此", "上述", "前者", "后者", "另", "还有", "第一", "第二", "第三",
              "他", "她", "呢")
STANDALONE_MIN_WORDS = {"en": 3, "zh": 8}  # content words (Han: characters)


def looks_standalone(question: str) -> bool:
    """Whether a question is clearly understood without the conversation: it refers back to nothing and
    says enough on its own. Conservative: when in doubt it is condensed."""
    lang = detect_language(question)
    if lang == "zh":
        if any(r in question for r in _REFERS_ZH):
            return False
    else:
        words = _words(question)
        lead = " ".join(words[:2])
        if any(w in _REFERS_EN for w in words) or any(lead == x or lead.startswith(x + " ") for x in _LEADS_EN):
            return False
    return len(_content(question)) >= STANDALONE_MIN_WORDS[lang]


@dataclass(frozen=True)
class Condensed:
    question: str  # what retrieval and the relevance gate use
    method: Method  # none: no history; standalone: no rewrite needed; model: the model's rewrite;
    # fallback: the previous question + the follow-up
    raw: str = ""  # the model's first line, for debugging and measurement


def recent_turns(history: Sequence[ChatMessage], turns: int = HISTORY_TURNS) -> list[ChatMessage]:
    """The last ``turns`` user/assistant pairs (system messages and empty turns left out)."""
    kept = [m for m in history if m.role in ("user", "assistant") and m.content.strip()]
    out: list[ChatMessage] = []
    users = 0
    for m in reversed(kept):
        if m.role == "user":
            users += 1
            if users > turns:
                break
        out.append(m)
    out.reverse()
    while out and out[0].role == "assistant":  # the answer to a question that is no longer shown
        out.pop(0)
    return out


def _clip(text: str, limit: int = TURN_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _condense_request(history: Sequence[ChatMessage], question: str, lang: Language) -> str:
    head, user, assistant, last, answer = _LABELS[lang]
    lines = [head]
    for m in recent_turns(history):
        text = strip_citations(m.content) if m.role == "assistant" else m.content
        lines.append(f"{user if m.role == 'user' else assistant}: {neutralize(_clip(text))}")
    lines += ["", f"{last} {neutralize(_clip(question))}", answer]
    return "\n".join(lines)


def condense_messages(history: Sequence[ChatMessage], question: str,
                      language: Language | None = None) -> list[ChatMessage]:
    """The condense prompt: an instruction in the follow-up's language, one worked example (it teaches a
    small model the format and what "the second one" means), the recent turns, the follow-up."""
    lang = language or detect_language(question)
    example_turns, example_question, example_answer = _EXAMPLE[lang]
    return [
        ChatMessage("system", SYSTEM_ZH if lang == "zh" else SYSTEM_EN),
        ChatMessage("user", _condense_request(example_turns, example_question, lang)),
        ChatMessage("assistant", example_answer),
        ChatMessage("user", _condense_request(history, question, lang)),
    ]


def clean_rewrite(text: str) -> str:
    """The first non-empty line of the model's output, without labels, quotes or tags."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    for _ in range(3):
        stripped = _PREFIX.sub("", line, count=1)
        if stripped == line:
            break
        line = stripped
    line = _TAG.sub("", line).strip().strip(_QUOTES).strip()
    return " ".join(line.split())


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _same(a: str, b: str) -> bool:
    return _words(a) == _words(b)


def _stem(word: str) -> str:
    """A crude English stem (reimbursed / reimbursement, file / filing): the first five letters."""
    return word[:5] if word.isascii() and len(word) > 5 else word


def _content(text: str) -> set[str]:
    return {w for w in _words(text) if w not in _GLUE}


def validate(rewrite: str, question: str, history: Sequence[ChatMessage]) -> str | None:
    """None when the rewrite is usable; else why not (for measurement and the debug log).

    A usable rewrite is one line of at most MAX_CONDENSED_CHARS, a question when the follow-up was one,
    in the follow-up's language; it keeps most of the follow-up's own words, takes the words it adds from
    the conversation (a small model otherwise invents a topic or answers), and is not a copy of an earlier
    answer.
    """
    if not rewrite:
        return "empty"
    if len(rewrite) > MAX_CONDENSED_CHARS:
        return "too long"
    if question.rstrip().endswith(("?", "？")) and not rewrite.endswith(("?", "？")):
        return "not a question"
    if detect_language(rewrite) != detect_language(question):
        return "other language"
    if _same(rewrite, question):
        return "unchanged"
    turns = [strip_citations(m.content) if m.role == "assistant" else m.content for m in history]
    if any(_same(rewrite, t) for m, t in zip(history, turns, strict=True) if m.role == "assistant"):
        return "copies an answer"  # (an earlier question is a fine rewrite of "back to the first topic")
    words, own = {_stem(w) for w in _content(rewrite)}, {_stem(w) for w in _content(question)}
    if not words:
        return "no content words"
    if len(own - words) * 2 > len(own):
        return "drops the follow-up's words"
    known = own | {_stem(w) for t in turns for w in _words(t)}
    grounded = len(words & known) / len(words)
    if grounded < MIN_GROUNDED:
        return f"not grounded ({grounded:.0%} of its words come from the conversation)"
    if not (words - own) & known:
        return "adds nothing from the conversation"
    return None


def fallback_question(history: Sequence[ChatMessage], question: str) -> str:
    """The last user question followed by the follow-up: the topic and what is asked about it."""
    last = next((m.content for m in reversed(history) if m.role == "user" and m.content.strip()), "")
    if not last:
        return question
    joined = f"{_clip(last, MAX_CONDENSED_CHARS)} {question}"
    return joined if len(joined) <= 2 * MAX_CONDENSED_CHARS else question


def condense(generate: Callable[[list[ChatMessage], int, float], Iterable[str]],
             history: Sequence[ChatMessage], question: str) -> Condensed:
    """A standalone version of ``question`` for retrieval. ``generate`` is a Generator's ``stream``."""
    turns = recent_turns(history)
    if not any(m.role == "user" for m in turns):
        return Condensed(question, "none")
    if looks_standalone(question):
        return Condensed(question, "standalone")
    out: list[str] = []
    stream = generate(condense_messages(turns, question), CONDENSE_MAX_TOKENS, 0.0)
    try:
        for delta in stream:
            out.append(delta)
            if "\n" in "".join(out).strip():  # one line is all we take
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:  # a generator that was left early releases the model's lock now
            close()
    raw = clean_rewrite("".join(out))
    if validate(raw, question, turns) is None:
        return Condensed(raw, "model", raw)
    return Condensed(fallback_question(turns, question), "fallback", raw)
