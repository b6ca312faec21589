"""The Generator contract: what the answer service (app.services.qa) relies on - identity for the query
log, token counting and the context window for prompt building, think_prefilled for the reasoning
splitter, and a stream of text deltas that stops at max_tokens and can be abandoned."""

from __future__ import annotations

import string

import pytest

from llm.types import ChatMessage, Generator

WORDS = "one two three four five six seven eight nine ten eleven twelve".split()
MESSAGES = [
    ChatMessage("system", "Repeat the user's words exactly, nothing else."),
    ChatMessage("user", " ".join(WORDS)),
]


class GeneratorContract:
    """Mixin: a concrete class provides the ``generator`` fixture (built with ``context_window`` tokens
    of context) and may say how many tokens one generated token can re-tokenize into (``slack``)."""

    context_window: int = 2048
    slack: int = 2  # a streamed piece may re-tokenize into a token or two more than was generated

    @pytest.fixture
    def generator(self) -> Generator:
        raise NotImplementedError

    def test_is_a_generator(self, generator: Generator) -> None:
        assert isinstance(generator, Generator)
        assert isinstance(generator.model_name, str) and generator.model_name
        sha = generator.model_sha256
        assert sha is None or (len(sha) == 64 and set(sha) <= set(string.hexdigits.lower()))

    def test_context_window(self, generator: Generator) -> None:
        window = generator.context_window
        assert type(window) is int and window > 0
        assert window == self.context_window  # what it was built with (the model allows more)

    def test_think_prefilled_is_a_bool(self, generator: Generator) -> None:
        assert type(generator.think_prefilled) is bool

    def test_count_tokens(self, generator: Generator) -> None:
        short, long = generator.count_tokens("one two"), generator.count_tokens(" ".join(WORDS))
        assert type(short) is int and 0 < short < long
        assert generator.count_tokens("差旅住宿标准") > 0

    def test_stream_yields_text_deltas(self, generator: Generator) -> None:
        stream = generator.stream(MESSAGES, max_tokens=6, temperature=0.0)
        assert iter(stream) is stream  # lazy: the caller renders each delta as it comes
        deltas = list(stream)
        assert deltas, "no output"
        assert all(type(d) is str and d for d in deltas), deltas
        assert "".join(deltas).strip()

    def test_stream_respects_max_tokens(self, generator: Generator) -> None:
        text = "".join(generator.stream(MESSAGES, max_tokens=2, temperature=0.0))
        assert text
        assert generator.count_tokens(text) <= 2 + self.slack, text
        longer = "".join(generator.stream(MESSAGES, max_tokens=10, temperature=0.0))
        assert generator.count_tokens(longer) > generator.count_tokens(text), "max_tokens must be what stops it"

    def test_stream_can_be_abandoned(self, generator: Generator) -> None:
        it = generator.stream(MESSAGES, max_tokens=8, temperature=0.0)
        assert type(next(it)) is str
        it.close()  # the user closed the page: the generator must be usable again at once
        assert "".join(generator.stream(MESSAGES, max_tokens=4, temperature=0.0))
