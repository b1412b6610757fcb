"""Atomic file and folder writes: an interrupted stage never leaves a complete-looking output."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.utils.errors import InputError

# Every temporary name holds this mark (`.<name>.<random>.tmp[.suffix]`), so leftovers of a killed writer can be found.
TMP_MARK = ".tmp"


def _create_temporary(parent: Path, prefix: str, suffix: str, *, directory: bool) -> Path:
    """Create a new file or folder with a random name, with the modes the umask gives (mkstemp would force 0600)."""
    while True:
        candidate = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if directory:
                candidate.mkdir(mode=0o777)
            else:
                os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate


def is_temporary(path: Path) -> bool:
    """Whether `path` is a temporary of `atomic_path` / `atomic_dir` (a hidden name holding the temporary mark)."""
    return path.name.startswith(".") and TMP_MARK in path.name


# A write that fails for want of room: the error of write() or close() names no file ("[Errno 28] No space left on
# device"), so the atomic writers name the output and its folder.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _naming(err: OSError, path: Path) -> OSError:
    """`err` as an OSError naming `path` and its folder when it is a full disk's (or quota's) and names no file."""
    if err.errno not in _NO_ROOM or err.filename is not None:
        return err
    reason = err.strerror or os.strerror(err.errno or 0)
    return OSError(err.errno, f"{reason} (writing it in {path.parent}; free space there and run again)", str(path))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync and rename it into place, on failure remove it.

    The temporary name keeps the suffix so that writers which pick a format by extension still work. A full disk is
    reported naming `path` and its folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = _create_temporary(path.parent, f".{path.stem}.", f"{TMP_MARK}{path.suffix}", directory=False)
    except OSError as err:
        if err.errno not in _NO_ROOM:
            raise
        # A full directory: the error names the random temporary name, not the output.
        raise _naming(OSError(err.errno, err.strerror), path) from err
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        named = _naming(err, path)
        if named is err:
            raise
        raise named from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success replace `path` with it, on failure remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path.parent, f".{path.name}.", TMP_MARK, directory=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _naming(err, path)
        if named is err:
            raise
        raise named from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def stat_fingerprint(paths: Iterable[Path], root: Path) -> str:
    """Names (relative to `root`), sizes and mtimes of `paths`: a cheap identity of a stage's input files.

    A training stage resumes its saved state only when this is unchanged, so a re-run on new inputs (same paths,
    new contents) starts over instead of "resuming" the finished run of the old inputs.
    """
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = path.stat()
            identity = f"{stat.st_size}:{stat.st_mtime_ns}"
        except FileNotFoundError:  # the stage reports the missing file itself, with its own message
            identity = "missing"
        digest.update(f"{path.relative_to(root)}:{identity};".encode())
    return digest.hexdigest()


def read_npz(path: Path, names: tuple[str, ...], what: str) -> tuple[np.ndarray, ...]:
    """The arrays `names` of an .npz file (no pickles); InputError naming the file and `what` it should be when it
    cannot be read or lacks one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return tuple(np.asarray(data[name]) for name in names)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: cannot read {what} ({type(err).__name__}: {err})") from err
