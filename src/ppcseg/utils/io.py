"""Atomic file and folder writes: an interrupted stage never leaves a complete-looking output."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync and rename it into place, on failure remove it.

    The temporary name keeps the suffix so that writers which pick a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success replace `path` with it, on failure remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def resumable_dir(path: str | Path) -> Path:
    """A work folder for per-item outputs of a resumable stage: `<path>.partial`, kept across kills.

    Items are written into it atomically one by one; `finish_resumable_dir` renames it to `path` when all are done.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    return partial


def finish_resumable_dir(path: str | Path) -> None:
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    if path.exists():
        shutil.rmtree(path)
    os.replace(partial, path)


def stat_fingerprint(paths: Iterable[Path], root: Path) -> str:
    """Names (relative to `root`), sizes and mtimes of `paths`: a cheap identity of a stage's input files.

    A training stage resumes its saved state only when this is unchanged, so a re-run on new inputs (same paths,
    new contents) starts over instead of "resuming" the finished run of the old inputs.
    """
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()
