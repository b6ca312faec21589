"""Is llama.cpp's AMX path safe here? Some VMs advertise Intel AMX and then trap its instructions.

A llama.cpp built for the host CPU repacks weights into an "AMX" buffer when the CPU flags say
``amx_int8``; on a hypervisor that advertises AMX without enabling it, the first batched matrix
multiplication kills the process: SIGILL on one Sapphire Rapids VM (``tileloadd`` in libggml-cpu),
SIGSEGV in the first ``decode`` on another (llama-cpp-python 0.3.36). Whether that happens is only
known by trying, so the first load in a process tries it in a child process with the same model (a
second or two, and only on CPUs that advertise AMX with a build that uses it); when the child dies
of SIGILL, SIGSEGV or SIGBUS the model is loaded without extra buffer types (no weight repacking).
Measured on the first VM with a build made without AMX, so both ways run: the
unrepacked Q4_K_M weights were no slower (decode 12.0 vs 12.6 tokens/s, prompt 118 vs 78 tokens/s on
2 threads; docs/benchmarks.md), so the fallback costs nothing there and kb keeps the stock build.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_PROBE = """
import sys
from llama_cpp import Llama
llama = Llama(model_path=sys.argv[1], n_ctx=64, n_batch=32, n_threads=1, n_threads_batch=1, verbose=False)
llama.eval(llama.tokenize(b"one two three four five six seven eight nine ten eleven twelve", add_bos=False))
"""

CRASHES = {-signal.SIGILL, -signal.SIGSEGV, -signal.SIGBUS}  # the child's return code when killed by one
_RESULT: dict[str, bool] = {}
_LOCK = threading.Lock()


def cpu_advertises_amx() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_int8" in text or " amx_tile" in text


def build_uses_amx() -> bool:
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def amx_traps(model_path: Path, timeout: float = 300.0) -> bool:
    """True when llama.cpp's AMX path crashes on this machine (tried once per process)."""
    with _LOCK:
        if "traps" not in _RESULT:
            _RESULT["traps"] = cpu_advertises_amx() and build_uses_amx() and _probe(model_path, timeout)
        return _RESULT["traps"]


def _probe(model_path: Path, timeout: float) -> bool:
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(model_path)], capture_output=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not check whether AMX works here (%s); assuming it does", e)
        return False
    if proc.returncode in CRASHES:
        log.warning("this CPU advertises AMX but llama.cpp's AMX path crashes here (%s; a VM that does not "
                    "enable it): loading models without llama.cpp's AMX/repacked weights",
                    signal.Signals(-proc.returncode).name)
        return True
    return False


@contextlib.contextmanager
def without_extra_buffers(enabled: bool = True) -> Iterator[None]:
    """While active, llama_cpp.Llama builds its model with ``use_extra_bufts = False``.

    llama-cpp-python has no argument for it, so the default-params factory is wrapped for the duration
    (the caller holds the load lock, so no other load sees it).
    """
    if not enabled:
        yield
        return
    from llama_cpp import llama_cpp as lib

    original = lib.llama_model_default_params

    def params():  # type: ignore[no-untyped-def]
        p = original()
        p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = original
