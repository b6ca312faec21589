"""Thread budgets per role, the GPU offload default, and the AMX fallback switch."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from llm import llamacpp, threads
from llm.amx import without_extra_buffers
from llm.llamacpp import LlamaCppGenerator
from llm.threads import ThreadBudget, budget, physical_cores


def test_physical_cores_is_positive_and_at_most_the_logical_cpus() -> None:
    import os

    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cores", "alone", "generator", "embedder"),
    [(1, 1, 1, 1), (2, 2, 1, 1), (4, 4, 3, 1), (8, 8, 6, 2), (16, 16, 12, 4)],
)
def test_budget_splits_the_cores_between_roles(cores: int, alone: int, generator: int, embedder: int) -> None:
    assert budget("generator", cores=cores) == ThreadBudget(alone, alone)
    assert budget("generator", sharing=("embedder",), cores=cores).threads == generator
    assert budget("embedder", sharing=("generator",), cores=cores).threads == embedder
    if cores > 1:  # never more threads than cores in total
        assert generator + embedder <= cores


def test_budget_rejects_unknown_roles() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        budget("parser")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown roles"):
        budget("generator", sharing=("ocr",))  # type: ignore[arg-type]


def test_generator_defaults_to_the_generator_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(threads, "physical_cores", lambda: 6)
    monkeypatch.setattr(llamacpp, "budget", lambda role: threads.budget(role, cores=6))
    g = LlamaCppGenerator(tmp_path / "m.gguf", n_ctx=512)
    g._context_window = 512  # no file to read the header from
    monkeypatch.setattr(llamacpp, "gpu_offload_available", lambda: False)
    assert g._key()[3:] == (6, 6, 512)  # decode threads, batch threads, n_batch
    g2 = LlamaCppGenerator(tmp_path / "m.gguf", n_threads=2, n_threads_batch=3, n_batch=256)
    g2._context_window = 512
    assert g2._key()[3:] == (2, 3, 256)


def test_all_layers_go_to_the_gpu_when_llama_cpp_can_offload(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    g = LlamaCppGenerator(tmp_path / "m.gguf")
    monkeypatch.setattr(llamacpp, "gpu_offload_available", lambda: True)
    assert g._resolved_gpu_layers() == -1
    monkeypatch.setattr(llamacpp, "gpu_offload_available", lambda: False)
    assert g._resolved_gpu_layers() == 0
    assert LlamaCppGenerator(tmp_path / "m.gguf", n_gpu_layers=10)._resolved_gpu_layers() == 10


def test_without_extra_buffers_switches_repacking_off_only_while_active() -> None:
    from llama_cpp import llama_cpp as lib

    assert lib.llama_model_default_params().use_extra_bufts
    with without_extra_buffers():
        assert not lib.llama_model_default_params().use_extra_bufts
    assert lib.llama_model_default_params().use_extra_bufts
    with without_extra_buffers(enabled=False):
        assert lib.llama_model_default_params().use_extra_bufts


@pytest.mark.parametrize(("returncode", "traps"), [(-signal.SIGILL, True), (-signal.SIGSEGV, True),
                                                   (-signal.SIGBUS, True), (0, False), (1, False)])
def test_the_amx_probe_counts_any_crash_of_its_child_as_a_trap(monkeypatch, tmp_path, returncode, traps) -> None:
    """SIGILL on one VM that advertises AMX without enabling it, SIGSEGV on another: either way the model is
    then loaded without the AMX path. An ordinary failure (a bad file) is no reason to give it up."""
    import subprocess

    from llm import amx

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, returncode, b"", b""))
    assert amx._probe(tmp_path / "model.gguf", 5.0) is traps
