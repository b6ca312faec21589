"""In-process generation with llama.cpp (GGUF), using the model's own chat template.

The model is loaded on first use, once per process, after its sha256 is checked. llama.cpp contexts
are not thread-safe and Streamlit runs every browser session in its own thread, so one lock per loaded
model serializes generation.

Keeping one ``Llama`` per process is also what makes the unchanging system prompt free after the first
question: llama-cpp-python compares each prompt's tokens with what its KV cache holds and evaluates
only the part after the longest common prefix (see docs/benchmarks.md for the measured saving).
Every answer goes through the loop guard (llm.repetition) and the configured sampling (llm.sampling).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import foreground
from app.errors import KbError, NotFound
from llm.amx import amx_traps, without_extra_buffers
from llm.gguf_meta import read_header
from llm.models import ModelIntegrityError, recorded_sha256, sha256_file, verify
from llm.reasoning import template_prefills_think
from llm.repetition import AnswerStream, LoopGuard
from llm.sampling import Sampling
from llm.threads import budget
from llm.types import ChatMessage

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    llama: Any  # llama_cpp.Llama
    formatter: Any  # llama_cpp.llama_chat_format.Jinja2ChatFormatter
    sha256: str
    lock: threading.Lock
    n_gpu_layers: int


# One loaded model per (file, context size, offload, threads, batch threads, batch) for the whole process.
_Key = tuple[str, int, int, int, int, int]
_LOADED: dict[_Key, _Loaded] = {}
_LOAD_LOCK = threading.Lock()


def gpu_offload_available() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def _default_threads() -> int:
    """One thread per physical core (llm.threads); a caller that also embeds passes a smaller budget."""
    return budget("generator").threads


def _chat_formatter(llama: Any, path: Path) -> Any:
    """A formatter built from the GGUF's own tokenizer.chat_template (never a guessed built-in)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise KbError(
            f"{path.name} has no chat template in its metadata, so kb cannot format a conversation for "
            "it. Use an instruction-tuned GGUF that carries tokenizer.chat_template."
        )
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id])


class LlamaCppGenerator:
    """``Generator`` backed by llama-cpp-python. The constructor only records settings."""

    def __init__(
        self,
        model_path: Path,
        sha256: str | None = None,
        n_ctx: int = 4096,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        sampling: Sampling | None = None,
        loop_guard: LoopGuard | None = LoopGuard(),
        weight_repack: bool | None = None,
        foreground_lock: Path | None = None,
        allow_unverified: bool = False,
    ) -> None:
        self.model_path = Path(model_path)
        self._allow_unverified = allow_unverified  # load a model no digest vouches for (llm.allow_unverified_model)
        self.model_name = self.model_path.stem
        self._expected_sha256 = sha256.lower() if sha256 else None
        self._n_ctx = n_ctx
        self._n_gpu_layers = n_gpu_layers
        self._n_threads = n_threads
        self._n_threads_batch = n_threads_batch
        self._n_batch = n_batch
        self.sampling = sampling or Sampling()
        self.loop_guard = loop_guard
        self._weight_repack = weight_repack
        self._foreground_lock = foreground_lock  # held while generating on the CPU (app/foreground.py)
        self._context_window: int | None = None
        self._loaded: _Loaded | None = None

    # -- Generator protocol ------------------------------------------------------------------------
    @property
    def model_sha256(self) -> str | None:
        """The verified digest once loaded; before that, the expected one (argument or manifest)."""
        if self._loaded is not None:
            return self._loaded.sha256
        return self._expected_sha256 or recorded_sha256(self.model_path)

    @property
    def context_window(self) -> int:
        """Configured n_ctx, capped at the length the model was trained for."""
        if self._context_window is None:
            if not self.model_path.is_file():
                raise NotFound(f"Model file {self.model_path} does not exist. Run `kb models pull`.")
            trained = read_header(self.model_path, tensor_types=False).context_length
            self._context_window = min(self._n_ctx, trained) if trained else self._n_ctx
        return self._context_window

    def count_tokens(self, text: str) -> int:
        # Tokenizing reads the vocabulary only, so it does not take the generation lock.
        return len(self._load().llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(self, messages: list[ChatMessage], max_tokens: int, temperature: float) -> AnswerStream:
        """The answer's deltas; ``finish_reason`` on the result says why it ended ("repetition": cut)."""
        loaded = self._load()
        return AnswerStream(self._deltas(loaded, messages, max_tokens, temperature), self.loop_guard)

    def _deltas(
        self, loaded: _Loaded, messages: list[ChatMessage], max_tokens: int, temperature: float
    ) -> Generator[str, None, str | None]:
        payload = [{"role": m.role, "content": m.content} for m in messages]
        finish = None
        on_cpu = loaded.n_gpu_layers == 0
        with loaded.lock, foreground.generating(self._foreground_lock if on_cpu else None):
            try:
                chunks = loaded.llama.create_chat_completion(
                    messages=payload, max_tokens=max_tokens, temperature=temperature, stream=True,
                    **self.sampling.llamacpp_kwargs(),
                )
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    text = choice["delta"].get("content")
                    if text:
                        yield text
            except ValueError as e:
                if "exceed context window" in str(e):
                    raise KbError(
                        f"The prompt does not fit the model's context window ({self.context_window} "
                        "tokens). Ask a shorter question or raise llm.n_ctx."
                    ) from e
                raise
        return finish

    # -- extras --------------------------------------------------------------------------------
    def render_prompt(self, messages: list[ChatMessage]) -> str:
        """The exact prompt text the model's chat template produces (for tests and debugging)."""
        loaded = self._load()
        result = loaded.formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return str(result.prompt)

    @property
    def chat_template(self) -> str:
        return str(self._load().formatter.template)

    @property
    def think_prefilled(self) -> bool:
        """The template opens a <think> block itself (DeepSeek-R1 style): output starts in reasoning."""
        return template_prefills_think(self.render_prompt([ChatMessage("user", "?")]))

    @property
    def n_gpu_layers(self) -> int:
        return self._load().n_gpu_layers

    @property
    def llama(self) -> Any:
        """The shared llama_cpp.Llama (take care: not thread-safe outside :meth:`stream`)."""
        return self._load().llama

    # -- loading -------------------------------------------------------------------------------
    def _resolved_gpu_layers(self) -> int:
        if self._n_gpu_layers is not None:
            return self._n_gpu_layers
        return -1 if gpu_offload_available() else 0

    def _key(self) -> _Key:
        threads = self._n_threads or _default_threads()
        threads_batch = self._n_threads_batch or threads
        return (str(self.model_path.resolve()), self.context_window, self._resolved_gpu_layers(), threads,
                threads_batch, self._n_batch)

    def _load(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        key = self._key()
        with _LOAD_LOCK:
            loaded = _LOADED.get(key)
            if loaded is None:
                loaded = self._load_uncached(key)
                _LOADED[key] = loaded
        self._check_same_file(loaded)
        self._loaded = loaded
        return loaded

    def _check_same_file(self, loaded: _Loaded) -> None:
        # Another generator may have loaded the same file under a different expected digest.
        if self._expected_sha256 and loaded.sha256 != self._expected_sha256:
            raise ModelIntegrityError(
                f"{self.model_path} is loaded with sha256 {loaded.sha256[:16]}…, not the expected "
                f"{self._expected_sha256[:16]}…. Check llm settings and restart."
            )

    def _load_uncached(self, key: _Key) -> _Loaded:
        _, n_ctx, n_gpu_layers, n_threads, n_threads_batch, n_batch = key
        expected = self._expected_sha256 or recorded_sha256(self.model_path)
        if expected:
            digest = verify(self.model_path, expected)
        elif not self._allow_unverified:
            raise ModelIntegrityError(
                f"{self.model_path} is not in the verified models manifest "
                f"({self.model_path.parent / 'manifest.json'}) and no expected sha256 is set, so kb will not load "
                "it: a swapped model file would go unnoticed. Set KB_LLM__MODEL_SHA256 to the sha256 of a copy you "
                "trust, fetch the model with `kb models pull`, or set KB_LLM__ALLOW_UNVERIFIED_MODEL=true to load it "
                "unverified."
            )
        else:
            digest = sha256_file(self.model_path)
            log.warning(
                "%s has no recorded sha256; loading it unverified as llm.allow_unverified_model says (sha256 %s). "
                "Set KB_LLM__MODEL_SHA256 to have it checked.", self.model_path, digest
            )
        from llama_cpp import Llama

        repack = self._weight_repack
        if repack is None:  # on, unless this is a CPU whose AMX instructions trap
            repack = n_gpu_layers != 0 or not amx_traps(self.model_path)
        try:
            with without_extra_buffers(not repack):
                llama = Llama(
                    model_path=str(self.model_path),
                    n_ctx=n_ctx,
                    n_gpu_layers=n_gpu_layers,
                    n_threads=n_threads,
                    # prompt processing is compute-bound: hyper-threads and busy cores do not help it
                    n_threads_batch=n_threads_batch,
                    n_batch=n_batch,
                    chat_format="chat_template.default",  # never guess a built-in format
                    verbose=False,
                )
        except ValueError as e:
            raise KbError(
                f"llama.cpp could not load {self.model_path.name} ({e}). The file may be damaged or use "
                "an architecture this llama.cpp build does not know; update llama-cpp-python or pick "
                "another GGUF."
            ) from e
        formatter = _chat_formatter(llama, self.model_path)
        llama.chat_handler = formatter.to_chat_handler()
        log.info("loaded %s (n_ctx=%d, gpu layers=%d, threads=%d/%d, n_batch=%d)", self.model_path.name,
                 n_ctx, n_gpu_layers, n_threads, n_threads_batch, n_batch)
        return _Loaded(llama, formatter, digest, threading.Lock(), n_gpu_layers)
