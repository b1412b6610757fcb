"""Atomic writes on a full disk: the error names the output and its folder, and no temporary stays behind."""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ppcseg.utils.io import atomic_dir, atomic_path, write_json


@contextlib.contextmanager
def full_filesystem(path: Path) -> Iterator[Path]:
    """A 64 kB tmpfs at `path`, filled to its last byte (needs root, as mount does)."""
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); needs root")
    try:
        (path / "out" / "cams").mkdir(parents=True)  # a folder needs room of its own on tmpfs
        with open(path / "filler", "wb", buffering=0) as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
        yield path / "out"
    finally:
        subprocess.run(["umount", str(path)], check=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_full_disk_names_the_file_and_folder_and_leaves_no_temporary(tmp_path):
    with full_filesystem(tmp_path / "small") as out:
        with pytest.raises(OSError) as err:
            write_json(out / "seed.json", {"mIoU": list(range(5000))})
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(out / "seed.json")
        assert f"writing it in {out}" in err.value.strerror
        with pytest.raises(OSError) as err:
            with atomic_path(out / "cams" / "2007_000032.npz") as tmp:
                np.savez_compressed(tmp, cams=np.random.default_rng(0).random((21, 64, 64), dtype=np.float32))
        assert err.value.filename == str(out / "cams" / "2007_000032.npz")
        assert leftovers(out) == ["cams"] and leftovers(out / "cams") == []


def test_full_disk_in_an_atomic_folder_names_the_folder(tmp_path):
    with full_filesystem(tmp_path / "small") as out:
        with pytest.raises(OSError) as err:
            with atomic_dir(out / "VOC2012") as tmp:
                (tmp / "big.bin").write_bytes(b"x" * 200_000)
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(out / "VOC2012")
        assert leftovers(out) == ["cams"]  # as before: no VOC2012, no temporary folder


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError) as err:
        with atomic_path(tmp_path / "a.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/else")
    assert err.value.filename == "/somewhere/else" and leftovers(tmp_path) == []
