"""params.yaml and its overlays: load, deep-merge, validate against workflow/schemas/params.schema.yaml.

One source of truth for every knob: params.yaml -> (Snakemake config) -> the CLI's --params files -> this module.
Validation errors name the offending key, e.g. "cam.batch_size: -1 is less than the minimum of 1".
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import yaml

from ppcseg.utils.errors import InputError, ParamsError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay wins; nested dicts are merged key by key, everything else (lists included) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# libyaml's parser when PyYAML has it: the same result, several times faster (Snakemake and DVC parse the params
# files on every invocation). The construction, where duplicate keys are seen, is Python in both.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(_BaseLoader):
    """Refuses a mapping that repeats a key: YAML keeps the last one, so the first block would be silently ignored.

    Merge keys (`<<: *anchor`) are read as PyYAML and DVC read them: the anchored mappings' keys come first and the
    keys written beside `<<` win. Only keys written in the mapping itself count as repeated.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            merge = key_node.tag == _MERGE_TAG
            key = "<<" if merge else self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                # Every parameter is named: `1:`, `true:`, `[a]:` are typos (and a list key would not even hash).
                what = f"key {key_node.value!r}" if isinstance(key_node, yaml.ScalarNode) else f"key (a {key_node.id})"
                raise yaml.constructor.ConstructorError(
                    None, None, f"{what} is not a parameter name", key_node.start_mark
                )
            if key in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (lines {lines[key]} and {line})", key_node.start_mark
                )
            lines[key] = line
        # SafeConstructor.construct_mapping resolves the merge keys (flatten_mapping) before building the dict.
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, what: str = "params file", error: type[InputError] = ParamsError) -> Any:
    """The data of a YAML file, refusing repeated and non-string keys; `error` of one line naming the file (and
    line) otherwise. `what` names the kind of file in messages."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: {what} is not UTF-8 text (byte {err.start}: {err.reason})") from err
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.constructor.ConstructorError as err:
        if err.problem and err.problem.startswith("duplicate key"):
            raise error(f"{path}: {err.problem}") from err
        if err.problem and err.problem.startswith("key ") and err.problem_mark:
            raise error(f"{path}:{err.problem_mark.line + 1}: {err.problem}") from err
        raise error(yaml_error_message(path, err)) from err
    except yaml.YAMLError as err:
        raise error(yaml_error_message(path, err)) from err


def read_yaml(path: str | Path) -> dict[str, Any]:
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: must hold a mapping of parameter names, got {type(data).__name__}")
    return data


def yaml_error_message(path: str | Path, err: yaml.YAMLError) -> str:
    """One line, file:line:column first (PyYAML's own text spans lines and names "<unicode string>")."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    what = getattr(err, "problem", None) or getattr(err, "context", None) or type(err).__name__
    return f"{where}: not valid YAML ({' '.join(str(what).split())})"


# Keys that were renamed, old dotted name -> new one: a file that still uses the old name is refused with the new one
# (its value would otherwise be dropped as an unknown key, or worse, ignored). A later rename adds a line.
RENAMED_KEYS: dict[str, str] = {
    "crf_masks.t": "crf_masks.iters",
}


def refuse_renamed_keys(data: dict[str, Any], source: str) -> None:
    """Raise ParamsError "<source>: <old> was renamed <new>" for the first old name `data` still uses."""
    for old, new in RENAMED_KEYS.items():
        *sections, last = old.split(".")
        node: Any = data
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            raise ParamsError(f"{source}: {old} was renamed {new}")


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


_NAME = re.compile(r"[A-Za-z0-9_]+")


def _name(key: object) -> str:
    """A key as a message shows it: a plain name as is, anything else quoted (a line break stays on one line)."""
    return str(key) if _NAME.fullmatch(str(key)) else repr(key)


def _key_path(error: Any) -> str:
    return ".".join(_name(p) for p in error.absolute_path)


def _strict_validator() -> Any:
    """JSON Schema's validator with `integer` meaning an int: the standard one admits 1.0 (a whole float), which no
    loop count, seed or shard count means (`runs: [1.0]` would name no output path the workflow can match)."""
    import jsonschema

    def is_int(_checker: Any, instance: Any) -> bool:
        return isinstance(instance, int) and not isinstance(instance, bool)

    base = jsonschema.Draft202012Validator
    return jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", is_int))


def validate_params(params: dict[str, Any], source: str = "params") -> dict[str, Any]:
    """Raise ParamsError naming the first bad key (renamed, unknown, wrong type, out of range)."""
    refuse_renamed_keys(params, source)
    validator = _strict_validator()(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(list(e.absolute_path)), _key_path(e)))
    if errors:
        err = errors[0]
        where = _key_path(err)
        if err.validator == "additionalProperties":
            unknown = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            keys = ", ".join(f"{where + '.' if where else ''}{_name(k)}" for k in unknown)
            raise ParamsError(f"{source}: unknown key {keys}")
        raise ParamsError(f"{source}: {where or '<top>'}: {err.message}")
    bad = _first_non_finite(params, "")
    if bad is not None:
        # JSON Schema's `number` admits YAML's .nan and .inf (and compares NaN as in range); no parameter means them.
        raise ParamsError(f"{source}: {bad[0]}: {bad[1]} is not a finite number")
    return params


def _first_non_finite(value: Any, where: str) -> tuple[str, float] | None:
    """(dotted key, value) of the first NaN or infinite float, lists included (`scales.2`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _first_non_finite(item, f"{where}.{_name(key)}" if where else _name(key))
        if found is not None:
            return found
    return None


def load_params(paths: list[str | Path]) -> dict[str, Any]:
    """Merge the files in order (params.yaml first, overlays after) and validate the result."""
    if not paths:
        raise ParamsError("no params file given (pass --params params.yaml)")
    merged: dict[str, Any] = {}
    for path in paths:
        data = read_yaml(path)
        refuse_renamed_keys(data, str(path))  # names the file that still uses the old name
        merged = deep_merge(merged, data)
    return validate_params(merged, source=" + ".join(str(p) for p in paths))
