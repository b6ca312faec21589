"""Master-key status and rotation (admin)."""

from __future__ import annotations

from typing import Any

from app import audit
from app.services.caller import Principal, actor, require_role


def status(container, who: Principal) -> dict[str, Any]:
    require_role(who, "admin")
    with container.sessions() as s:
        return container.vault.status(s)


def rotate(container, who: Principal) -> tuple[int, int]:
    """Add a master-key version and re-wrap every data key under it: (new version, data keys re-wrapped)."""
    require_role(who, "admin")
    with container.sessions.begin() as s:
        version, count = container.vault.rotate(s)
        audit.append(s, container.vault, kind="admin", action="keys.rotate", target=f"v{version}", actor=actor(who),
                     details={"rewrapped": count})
    return version, count
