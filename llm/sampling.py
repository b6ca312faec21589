"""Sampling parameters beyond temperature, passed to both backends.

The defaults are the ones measured with bench/answer_sampling.py (see docs/benchmarks.md) and match
``LlmSettings``: a mild repeat penalty over the last 64 tokens keeps small models from looping without
suppressing the citation markers ("[1]") that the answer repeats on purpose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.settings import LlmSettings


# The prompt's own markup (llm.prompt): a small model that starts writing it is echoing the prompt
# (seen: SmolLM2 listing '<source id="1" ...>', '<source id="2" ...>' until max_tokens), never answering.
PROMPT_ECHO_STOPS: tuple[str, ...] = ('<source id="', "</source>", "<sources>", "</sources>")


@dataclass(frozen=True)
class Sampling:
    top_p: float = 0.95
    top_k: int = 40  # 0: off
    min_p: float = 0.05  # 0: off
    repeat_penalty: float = 1.1  # 1.0: off (llama.cpp, over the last 64 tokens)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = PROMPT_ECHO_STOPS

    @classmethod
    def from_settings(cls, cfg: LlmSettings) -> Sampling:
        return cls(**{name: getattr(cfg, name) for name in cls.__dataclass_fields__ if hasattr(cfg, name)})

    def llamacpp_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of llama_cpp.Llama.create_chat_completion."""
        out = asdict(self)
        out["stop"] = list(self.stop)
        if self.seed is None:
            del out["seed"]
        return out

    def openai_fields(self) -> dict[str, Any]:
        """Request fields for an OpenAI-compatible server.

        top_p and the presence/frequency penalties are standard. top_k, min_p and the repeat penalty
        are extensions that the llama.cpp server (``repeat_penalty``) and vLLM (``repetition_penalty``)
        read and other servers ignore; they are only sent when not neutral.
        """
        out: dict[str, Any] = {
            "top_p": self.top_p,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }
        if self.stop:
            out["stop"] = list(self.stop)[:4]  # OpenAI accepts at most four
        if self.top_k > 0:
            out["top_k"] = self.top_k
        if self.min_p > 0:
            out["min_p"] = self.min_p
        if self.repeat_penalty != 1.0:
            out["repeat_penalty"] = self.repeat_penalty
            out["repetition_penalty"] = self.repeat_penalty
        if self.seed is not None:
            out["seed"] = self.seed
        return out
