"""First-run setup: data dir, master key, schema, first admin. Safe to run again."""

from __future__ import annotations

from dataclasses import dataclass

from app import accounts, audit, migrate
from app.audit import Actor
from app.errors import ConfigError
from app.keys import KeyRing, Vault
from app.passwords import generate_password
from app.services.container import Container, ensure_data_dir


@dataclass
class InitResult:
    data_dir: str
    database: str
    key_file: str | None
    key_created: bool
    admin_created: str | None
    admin_password: str | None  # shown once, never stored in plaintext


def init(container: Container, admin_name: str = "admin", admin_password: str | None = None,
         actor: Actor | None = None) -> InitResult:
    s = container.settings
    ensure_data_dir(s.data_dir)
    for sub in (s.blobs_dir, s.models_dir, s.index_dir):
        sub.mkdir(parents=True, exist_ok=True)
    key_created = False
    if not s.crypto.master_key and not container.key_file.exists():
        KeyRing.create(container.key_file)
        key_created = True
    vault: Vault = container.vault
    migrate.upgrade(container.engine, audit_key=audit.chain_key(vault.ring))
    created_name = password = None
    with container.sessions.begin() as session:
        vault.ensure_key_version(session, vault.ring.current)
        if accounts.count_admins(session) == 0:
            password = admin_password or generate_password()
            accounts.add_user(session, admin_name, "admin", password)
            # the first password was typed on a command line or printed once: the web UI asks for a new one
            accounts.get_user(session, admin_name).must_change_password = True
            created_name = admin_name
            audit.append(session, vault, kind="admin", action="user.create", target=admin_name,
                         actor=actor or Actor("kb init", "admin", "cli"), details={"role": "admin"})
    return InitResult(
        data_dir=str(s.data_dir.resolve()),
        database=container.engine.url.render_as_string(hide_password=True),
        key_file=None if s.crypto.master_key else str(container.key_file),
        key_created=key_created,
        admin_created=created_name,
        admin_password=None if admin_password else password,
    )


def migrate_schema(container: Container, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to `revision` ('base' empties it); returns (before, after). The master key, when
    there is one, lets migration 0006 re-link an existing audit log under the keyed chain."""
    engine = container.engine
    before = migrate.current_revision(engine)
    if revision == "base":
        migrate.downgrade(engine, "base")
        try:  # the log is gone on purpose: its head checkpoint would report it as wiped
            store = audit.checkpoint_store(container.vault)
        except ConfigError:
            store = None
        if store is not None:
            store.forget(audit.database_id(engine.url))
    else:
        try:
            key = audit.chain_key(container.vault.ring)
        except ConfigError:  # no key yet: only an empty log can be migrated, and 0006 says so otherwise
            key = None
        migrate.upgrade(engine, revision, audit_key=key)
    return before, migrate.current_revision(engine)
