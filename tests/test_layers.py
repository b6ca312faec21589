"""The one direction of imports, checked: ui/, app/cli/, app/api/ -> app/services/ -> stages -> kernel.

Every import statement of every module is read (top level and inside functions), so a lazy
import that reaches the wrong way fails here as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CALLERS = ("app.cli", "app.api", "ui")
SERVICES = ("app.services",)
STAGES = ("ingest", "retrieval", "llm")
HEAVY = ("sqlalchemy", "faiss", "llama_cpp", "torch", "sentence_transformers", "openvino", "transformers",
         "presidio_analyzer", "spacy", *STAGES)
KERNEL_MODULES = sorted(p for p in (ROOT / "app").glob("*.py") if p.name != "__main__.py")  # the entry point

# what each layer must not import
RULES: list[tuple[str, list[Path], tuple[str, ...]]] = [
    ("kernel", KERNEL_MODULES, (*CALLERS, *SERVICES, *STAGES)),
    ("stages", [p for d in STAGES for p in (ROOT / d).rglob("*.py")], (*CALLERS, *SERVICES)),
    ("services", list((ROOT / "app" / "services").rglob("*.py")), CALLERS),
    ("cli", list((ROOT / "app" / "cli").rglob("*.py")), ("ui", "app.api")),
    ("api", list((ROOT / "app" / "api").rglob("*.py")), (*HEAVY, "ui", "app.cli", "app.db", "app.models")),
    ("ui", list((ROOT / "ui").rglob("*.py")), (*HEAVY, "app.cli", "app.api", "app.db", "app.models")),
]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # "from app import services"
    return names


def _violates(name: str, banned: tuple[str, ...]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


@pytest.mark.parametrize("layer,files,banned", RULES, ids=[r[0] for r in RULES])
def test_layer_imports_only_downwards(layer: str, files: list[Path], banned: tuple[str, ...]) -> None:
    assert files, f"no modules found for {layer}"
    bad = [f"{p.relative_to(ROOT)} imports {name}" for p in files for name in sorted(imported_modules(p))
           if _violates(name, banned)]
    assert not bad, f"{layer} reaches the wrong way:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from app.services.container import Container\n    import faiss\n")
    assert {"app.services.container", "faiss"} <= imported_modules(probe)
    assert _violates("app.services.container", SERVICES) and not _violates("app.servicesx", SERVICES)
