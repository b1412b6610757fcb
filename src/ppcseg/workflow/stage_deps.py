"""What a stage depends on besides its data: the package files it runs and the params keys it reads.

Both are read statically (with `ast`, nothing is imported) from the source tree the workflow runs, so Snakemake can
call them while it parses the rules: the stage's module is its entry in the CLI table (`STAGES` in cli.py), its code
is the closure of the package modules that module imports (at the top or inside functions, parent `__init__.py`
files included) plus the data files a module names in `CODE_DATA`, and its params keys are the module's
`PARAMS_KEYS`. The rules turn these into Snakemake inputs and params, and `ppcseg export-dvc` into DVC deps and params.
A stage is per-image (sharded with execution.shards) when its module declares `STAGE = PerImageStage(...)`.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "ppcseg"


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _literal(path: Path, name: str, default: object = None) -> object:
    """The value of a module-level `NAME = <literal>` (or `NAME: type = <literal>`) in a source file."""
    for node in _tree(path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return ast.literal_eval(node.value)
    return default


def _module_file(src: Path, module: str) -> Path | None:
    """The file of a package module (`a/b.py` or `a/b/__init__.py` under src), or None if it is no module of ours."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(module: str, path: Path) -> set[str]:
    """Package modules a module's source imports: `import a.b`, `from a import b` (module or name), relative forms."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)  # kept below only if it is a module
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


@functools.cache
def stage_modules(src: Path) -> dict[str, str]:
    """The CLI table: stage name -> module name."""
    table = _literal(src / PACKAGE / "cli.py", "STAGES")
    if not isinstance(table, dict):
        raise ValueError(f"{src / PACKAGE / 'cli.py'}: no STAGES table")
    return table


def _stage_file(stage: str, src: Path) -> tuple[str, Path]:
    modules = stage_modules(src)
    if stage not in modules:
        raise ValueError(f"unknown stage '{stage}' (the stages of {src / PACKAGE / 'cli.py'}: {', '.join(modules)})")
    path = _module_file(src, modules[stage])
    if path is None:
        raise ValueError(f"stage '{stage}': module {modules[stage]} has no file under {src}")
    return modules[stage], path


@functools.cache
def code_files(stage: str, src: Path = Path("src")) -> tuple[str, ...]:
    """Every source file the stage runs: its module's import closure within the package, sorted, as paths under src."""
    module, path = _stage_file(stage, src)
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        file = _module_file(src, name)
        if file is None:  # `from ppcseg.x import some_function`: the name is no module
            continue
        seen[name] = file
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        todo += sorted(_imported(name, file))
    files: set[Path] = set(seen.values())
    for file in seen.values():
        for data in _literal(file, "CODE_DATA", ()):
            target = file.parent / data
            if target.is_dir():
                files.update(p for p in target.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            else:
                files.add(target)
    return tuple(sorted(str(f) for f in files))


@functools.cache
def params_keys(stage: str, src: Path = Path("src")) -> tuple[str, ...]:
    """The dotted params keys the stage reads (its module's PARAMS_KEYS); `{name}` fields are filled by the rule."""
    _, path = _stage_file(stage, src)
    keys = _literal(path, "PARAMS_KEYS")
    if not isinstance(keys, tuple) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"{path}: PARAMS_KEYS must be a tuple of dotted params keys")
    return keys


@functools.cache
def per_image_stages(src: Path = Path("src")) -> tuple[str, ...]:
    """The stages whose module declares a per-image stage (`STAGE = PerImageStage(...)`, ppcseg/per_image.py)."""
    found = []
    for stage in stage_modules(src):
        _, path = _stage_file(stage, src)
        for node in _tree(path).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "PerImageStage":
                found.append(stage)
    return tuple(found)
