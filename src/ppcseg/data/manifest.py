"""The dataset manifest: every file of a prepared dataset with its size and SHA-256, written beside the folder.

Workflow rules take the dataset as a folder, whose timestamp does not change when a file inside is edited; they also
take `<root>.manifest.tsv`, which the preparation stage writes and the Snakefile refreshes before planning the jobs
(`refresh_manifest`: only files whose size or mtime changed are hashed again), so an edit re-runs the stages that
read the data. DVC hashes the folder itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ppcseg.utils.io import is_temporary, write_text

MANIFEST_SUFFIX = ".manifest.tsv"
# Snakemake's own file in a directory output; it is not data.
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"


def manifest_path(root: str | Path) -> Path:
    root = Path(root)
    return root.with_name(root.name + MANIFEST_SUFFIX)


def _stat_cache_path(root: Path) -> Path:
    return root.with_name(f".{root.name}{MANIFEST_SUFFIX}.stat.json")


def _data_files(root: Path) -> list[str]:
    names = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name != SNAKEMAKE_TIMESTAMP and not is_temporary(Path(name)):
                names.append(os.path.relpath(os.path.join(folder, name), root))
    return names


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(root: Path, cache: dict[str, list]) -> tuple[list[str], dict[str, list]]:
    """Manifest lines and the new stat cache; a file is hashed only when its size or mtime differ from the cache."""
    lines, new_cache = [], {}
    for name in _data_files(root):
        stat = (root / name).stat()
        cached = cache.get(name)
        if cached and cached[:2] == [stat.st_size, stat.st_mtime_ns]:
            sha = cached[2]
        else:
            sha = _sha256(root / name)
        new_cache[name] = [stat.st_size, stat.st_mtime_ns, sha]
        lines.append(f"{name}\t{stat.st_size}\t{sha}")
    return lines, new_cache


def write_manifest(root: str | Path) -> Path:
    """Write `<root>.manifest.tsv` (path, size, SHA-256 per file; sorted) and its stat cache."""
    root = Path(root)
    lines, cache = _entries(root, {})
    write_text(manifest_path(root), "".join(f"{line}\n" for line in lines))
    write_text(_stat_cache_path(root), json.dumps(cache))
    return manifest_path(root)


def refresh_manifest(root: str | Path) -> bool:
    """Rewrite the manifest if a file of `root` was added, removed or changed in content; True if it was rewritten.

    Nothing to do when the dataset does not exist yet (the preparation stage writes both); a dataset prepared without
    a manifest gets one.
    """
    root = Path(root)
    manifest = manifest_path(root)
    if not root.is_dir():
        return False
    if not manifest.is_file():
        write_manifest(root)
        return True
    try:
        cache = json.loads(_stat_cache_path(root).read_text())
    except (OSError, ValueError):
        cache = {}
    lines, new_cache = _entries(root, cache)
    text = "".join(f"{line}\n" for line in lines)
    changed = manifest.read_text() != text
    if changed:
        write_text(manifest, text)
    if new_cache != cache:
        write_text(_stat_cache_path(root), json.dumps(new_cache))
    return changed
