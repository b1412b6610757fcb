"""Checkpoints the pipeline writes: tensors and plain Python values only, loaded with weights_only=True.

Nothing here ever unpickles arbitrary objects, so a checkpoint from outside cannot execute code. A checkpoint carries a
`format` marker and `meta` (architecture, number of classes, ...) so that a mismatched file gives a clear error.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_path

FORMAT = "ppcseg-checkpoint-v1"


def save_checkpoint(path: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Atomically write {'format', 'meta', **state}. `state` holds tensors, dicts/lists of them and plain values."""
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, "meta": meta, **state}, tmp)
    except RuntimeError as err:  # torch's zip writer reports a full disk as a RuntimeError
        raise OSError(
            errno.ENOSPC if "write" in str(err) else errno.EIO, f"cannot write checkpoint ({err})", str(path)
        ) from err


def load_checkpoint(path: str | Path, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a pipeline checkpoint safely; check `meta` against `expect` (e.g. {'arch': 'resnet38', 'num_classes': 21})."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise InputError(f"{path}: cannot load checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path}: not a ppcseg checkpoint (missing format marker '{FORMAT}')")
    for key, value in (expect or {}).items():
        found = ckpt["meta"].get(key)
        if found != value:
            raise InputError(f"{path}: checkpoint has {key}={found!r}, expected {value!r}")
    return ckpt
