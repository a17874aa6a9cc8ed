"""The layering in docs/architecture.md, checked: every module imports only from its own layer or
the layers below, and the peers train / unlearning / evaluation do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "remcli"
LAYERS = [
    {"__init__", "errors", "seeding", "fileio", "progress", "settings", "config", "registry"},
    {"data"},
    {"models"},
    {"checkpoints", "engine", "distributed"},
    {"inputs"},
    {"train", "unlearning", "evaluation", "detection"},
    {"sweep"},
    {"cli", "__main__"},
]
PEERS = {"train", "unlearning", "evaluation", "detection"}


def part_of(module: str) -> str:
    """'remcli.data.views' -> 'data'; 'remcli' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("remcli"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("remcli"))
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert parts <= set().union(*LAYERS), parts - set().union(*LAYERS)


def test_no_module_imports_from_a_layer_above_or_a_peer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = part_of(".".join(("remcli", *path.relative_to(PACKAGE).with_suffix("").parts)))
        for module in imports(path):
            there = part_of(module)
            if there == here:
                continue
            if layer_of(there) > layer_of(here) or (here in PEERS and there in PEERS):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, wrong
