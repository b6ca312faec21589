"""Sign-in throttling per client address as well as per account (issue 19): nobody locks out `admin`
from another address, unknown and locked accounts get the same answer in comparable time, and one
address that keeps failing is refused for every account. Real SQLite (and PostgreSQL when set)."""

from __future__ import annotations

import statistics
import time

import pytest
from sqlalchemy import select

from app.models import AuditRecord
from app.services import session, throttle
from app.services.container import Container
from app.services.setup import init
from tests.conftest import make_settings

PASSWORD = "admin-password-1"
ATTACKER, ADMIN_DESK = "203.0.113.66", "10.0.0.5"


def attempt(c, name: str, password: str, client: str) -> str:
    """The answer a client sees: 'ok' or the error message."""
    try:
        session.sign_in(c, name, password, client=client)
    except session.LoginError as exc:
        return str(exc)
    return "ok"


def failed_whys(c) -> list[str]:
    with c.sessions() as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.action == "login.failed").order_by(AuditRecord.seq))
        return [r.details["why"] for r in rows]


def test_failing_from_another_address_does_not_lock_out_admin(container):
    answers = [attempt(container, "admin", "wrong-password-9", ATTACKER) for _ in range(5)]
    assert answers[:4] == [session.GENERIC_FAILURE] * 4 and "locked" in answers[4]
    assert "locked" in attempt(container, "admin", PASSWORD, ATTACKER)  # the attacker's address stays shut out
    assert attempt(container, "admin", PASSWORD, ADMIN_DESK) == "ok"  # the real admin, elsewhere, signs in
    assert "locked" in attempt(container, "admin", PASSWORD, ATTACKER)  # the admin's sign-in lifted nothing there
    assert attempt(container, "admin", PASSWORD, ADMIN_DESK) == "ok"


def test_unknown_and_locked_accounts_get_the_same_answers(container):
    """Same sequence of answers for a real account and a made-up one, from a fresh address each."""
    real = [attempt(container, "admin", f"wrong-password-{i}", "198.51.100.1") for i in range(7)]
    made_up = [attempt(container, "no-such-user", f"wrong-password-{i}", "198.51.100.2") for i in range(7)]
    assert real == made_up
    assert real[:4] == [session.GENERIC_FAILURE] * 4 and all("locked" in a for a in real[4:])
    # And from a third address, where neither failed: again the same (the real one is locked in the DB now).
    assert attempt(container, "admin", "wrong-password-x", "198.51.100.3") == \
        attempt(container, "no-such-user", "wrong-password-x", "198.51.100.4") == session.GENERIC_FAILURE


def _refusal_seconds(c, name: str, client: str, n: int = 5) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        with pytest.raises(session.LoginError):
            session.sign_in(c, name, f"wrong-password-{i}", client=client)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_unknown_locked_and_wrong_password_take_comparable_time(container):
    for i in range(5):  # lock admin from one address
        attempt(container, "admin", f"wrong-{i}-password", "192.0.2.1")
    locked = _refusal_seconds(container, "admin", "192.0.2.1")  # refused without checking the real hash
    unknown = _refusal_seconds(container, "nobody-here", "192.0.2.2")
    with container.sessions.begin() as s:  # a second account, not locked, for plain wrong passwords
        from app import accounts

        accounts.add_user(s, "sam", "staff", "sam-password-123")
    wrong = _refusal_seconds(container, "sam", "192.0.2.3", n=4)
    # Each refusal costs one scrypt check; the spread allows for a loaded machine.
    assert max(locked, unknown, wrong) < 2.5 * min(locked, unknown, wrong), (locked, unknown, wrong)


def test_one_address_failing_on_many_accounts_is_refused_for_all(tmp_path, db_url):
    c = Container(make_settings(tmp_path / "data", db_url, ui={"address_attempts": 4}))
    init(c, "admin", PASSWORD)
    answers = [attempt(c, f"user{i}", "some-password-1", ATTACKER) for i in range(4)]  # spraying names
    assert answers == [session.GENERIC_FAILURE] * 4
    refused = attempt(c, "admin", PASSWORD, ATTACKER)
    assert refused == session.ADDRESS_THROTTLED.format(minutes=c.settings.ui.lockout_minutes)
    assert attempt(c, "admin", PASSWORD, ADMIN_DESK) == "ok"
    assert failed_whys(c) == ["unknown user"] * 4 + ["address throttled"]
    c.engine.dispose()


def test_the_counter_forgets_after_its_window():
    counts = throttle.FailureCounter()
    key = throttle.pair_key("Admin", "10.1.1.1")
    assert key == throttle.pair_key("admin", "10.1.1.1")  # names compare case-insensitively
    for t in (0.0, 1.0, 2.0):
        counts.add(key, 60, now=t)
    assert counts.count(key, 60, now=59.5) == 3
    assert counts.count(key, 60, now=61.5) == 1  # the first two fell out of the window
    assert counts.count(key, 60, now=100.0) == 0
    counts.add(key, 60, now=200.0)
    counts.clear(key)
    assert counts.count(key, 60, now=200.0) == 0
