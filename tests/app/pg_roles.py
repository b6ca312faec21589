"""A kb that logs in as the application role `kb db setup-roles` made (tests on PostgreSQL only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.services import db_roles
from app.services.caller import operator
from app.services.container import Container
from tests.conftest import make_settings

APP_PASSWORD = "app-role-password-7"


@contextmanager
def app_role_kb(dba: Container, data_dir: Path) -> Iterator[tuple[Container, str, str]]:
    """(kb as the app role, owner name, app name) over `dba`'s database and data dir; `dba_engine` on the
    app kb is the superuser's, for tests that play an attacker who holds it. Roles are dropped after."""
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"kbt_owner_{suffix}", f"kbt_app_{suffix}"
    db_roles.setup_roles(dba, operator("cli"), owner=owner, app=app, app_password=APP_PASSWORD)
    url = make_url(dba.settings.database_url).set(username=app, password=APP_PASSWORD)
    app_kb = Container(make_settings(data_dir, url.render_as_string(hide_password=False)))
    app_kb.dba_engine = dba.engine  # type: ignore[attr-defined]
    try:
        yield app_kb, owner, app
    finally:
        app_kb.engine.dispose()
        with dba.engine.begin() as conn:
            conn.execute(text(f"REASSIGN OWNED BY {owner} TO current_user"))
            conn.execute(text(f"DROP OWNED BY {app}, {owner}"))
            conn.execute(text(f"DROP ROLE {app}"))
            conn.execute(text(f"DROP ROLE {owner}"))
