"""No call may leave the machine: switch off every library's hub lookups and usage telemetry.

Called when the container or an embedder module is imported, before the libraries themselves load.
OpenVINO sends a usage event to Google Analytics when it is imported (and NNCF when it quantizes),
with a client id it writes under ~/intel, unless its telemetry package cannot be imported: then both
fall back to their built-in stubs. So this process is made unable to import ``openvino_telemetry``.
"""

from __future__ import annotations

import os
import sys

_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "NNCF_CI": "1",  # NNCF's own switch for its telemetry
}


def enforce() -> None:
    for var, value in _ENV.items():
        os.environ.setdefault(var, value)
    telemetry = sys.modules.setdefault("openvino_telemetry", None)  # None in sys.modules = ImportError
    if telemetry is not None:  # imported before we could stop it: make its sender drop everything
        from openvino_telemetry.utils import sender

        sender.TelemetrySender.send = lambda *_args, **_kwargs: None  # type: ignore[method-assign]
