"""params.yaml and its overlays: load, deep-merge, validate against workflow/schemas/params.schema.yaml.

One source of truth for every knob: params.yaml -> (Snakemake config) -> the CLI's --params files -> this module.
Validation errors name the offending key, e.g. "cam.batch_size: -1 is less than the minimum of 1".
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ppcseg.utils.errors import ParamsError

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


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        # libyaml's loader when PyYAML has it: the same result, several times faster (Snakemake and DVC parse the
        # params files on every invocation).
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: must hold a mapping of parameter names, got {type(data).__name__}")
    return data


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _key_path(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path)


def validate_params(params: dict[str, Any], source: str = "params") -> dict[str, Any]:
    """Raise ParamsError naming the first bad key (unknown key, wrong type, out of range)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(list(e.absolute_path)), _key_path(e)))
    if errors:
        err = errors[0]
        where = _key_path(err)
        if err.validator == "additionalProperties":
            unknown = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            keys = ", ".join(f"{where + '.' if where else ''}{k}" for k in unknown)
            raise ParamsError(f"{source}: unknown key {keys}")
        raise ParamsError(f"{source}: {where or '<top>'}: {err.message}")
    return params


def load_params(paths: list[str | Path]) -> dict[str, Any]:
    """Merge the files in order (params.yaml first, overlays after) and validate the result."""
    if not paths:
        raise ParamsError("no params file given (pass --params params.yaml)")
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, read_yaml(path))
    return validate_params(merged, source=" + ".join(str(p) for p in paths))
