"""CPU thread budgets, so the generator and the embedder do not oversubscribe a small machine.

llama.cpp wants one thread per *physical* core: its worker threads spin while they wait for each
other, so a thread that shares a core with another busy thread stalls the whole step (measured 15x
slower on 2 vCPUs with one other busy process). On a machine that also embeds (the ingest worker, or
``kb serve`` running it in-process) the cores are split between the roles up front instead.

    budget("generator")                          # alone: every physical core
    budget("generator", sharing=("embedder",))   # with the ingest worker on the same machine
    budget("embedder", sharing=("generator",))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

Role = Literal["generator", "embedder"]
ROLES: tuple[Role, ...] = ("generator", "embedder")


@dataclass(frozen=True)
class ThreadBudget:
    threads: int  # token-by-token work (llama.cpp decoding; the embedder's intra-op threads)
    threads_batch: int  # batch work (llama.cpp prompt processing)


def _allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads count once), at least 1.

    Read from /sys topology (core_id per package); where that is unavailable, half the logical CPUs
    when there are several (the common 2-way SMT), else 1.
    """
    cpus = _allowed_cpus()
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            core = (topo / "core_id").read_text().strip()
            package = (topo / "physical_package_id").read_text().strip()
        except OSError:
            return max(1, len(cpus) // 2) if len(cpus) > 1 else 1
        cores.add((package, core))
    return max(1, len(cores))


def _split(cores: int, roles: tuple[Role, ...]) -> dict[Role, int]:
    """Cores per role. The generator is the latency users wait on, so it gets the larger share; the
    embedder gets a quarter (at least one core). With one core, both get it and the OS time-shares."""
    if len(roles) == 1:
        return {roles[0]: cores}
    embedder = max(1, cores // 4)
    generator = max(1, cores - embedder)
    return {"generator": generator, "embedder": embedder}


def budget(role: Role, sharing: tuple[Role, ...] = (), cores: int | None = None) -> ThreadBudget:
    """Threads for ``role`` when the roles in ``sharing`` run on the same machine at the same time."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {ROLES}")
    unknown = [r for r in sharing if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown roles {unknown}; choose from {ROLES}")
    roles = tuple(dict.fromkeys((role, *sharing)))
    n = _split(cores or physical_cores(), roles)[role]
    return ThreadBudget(threads=n, threads_batch=n)
