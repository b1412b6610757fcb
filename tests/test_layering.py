"""The package reads top-down: every import points to its own layer or one below, no two modules import each other
(directly or around a loop), and no stage module imports another stage module (README: stages and modules).

Imports are read from the sources (at the top of a module and inside functions), nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

from ppcseg.cli import STAGES

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first; a module may import from its own layer and those below it.
LAYERS: list[set[str]] = [
    {"utils"},
    {"config"},
    {"data"},
    {"models", "losses", "per_image"},
    {"cam", "refine", "segment", "evaluation"},
    {"released"},
    {"report"},
    {"workflow"},
    {"cli", "__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "ppcseg").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """The package modules `module` imports (a `from a import b` names module a.b when that is a module, else a)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != "ppcseg" and name != module)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1]
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: in no layer of {LAYERS}; add its package to one")


def test_every_import_points_to_its_own_layer_or_below():
    upward = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module != "ppcseg"
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_loops():
    loops = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                loops.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in GRAPH:
        if module not in state:
            visit(module, [module])
    assert loops == []


def test_no_stage_module_imports_another():
    stage_modules = set(STAGES.values())
    assert stage_modules <= set(MODULES), "every stage of the CLI table has a module"
    crossing = [f"{m} -> {t}" for m in sorted(stage_modules) for t in sorted(GRAPH[m] & stage_modules)]
    assert crossing == []
