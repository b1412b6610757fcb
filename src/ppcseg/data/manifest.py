"""The dataset manifest: a digest of a prepared dataset's content, written beside the folder.

Workflow rules take the dataset as a folder, whose timestamp does not change when a file inside is edited; they also
take `<root>.manifest.tsv`, which the preparation stage writes and the Snakefile refreshes before planning the jobs
(`refresh_manifest`), so an edit re-runs the stages that read the data (docs/reliability.md).

The manifest is a pure function of the dataset's content: one line per top-level entry of the folder (file count,
bytes, SHA-256 over the names, sizes and SHA-256s of its files). It stays far below the 1 MB up to which Snakemake
compares an input's checksum with the one it recorded, so a manifest deleted and written again for an unchanged
dataset re-runs nothing, also at VOC size (32 074 files).

The per-file SHA-256s live in a stat cache next to it (`.<root>.manifest.tsv.stat.json`): a file is hashed again only
when its size, mtime, ctime or inode changed. ctime is set by the kernel on every write and cannot be set back, so an
in-place edit that restores the mtime (`touch -r`) is still seen.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ppcseg.utils.errors import InputError
from ppcseg.utils.io import TMP_MARK, write_text

MANIFEST_SUFFIX = ".manifest.tsv"
HEADER = "# entry\tfiles\tbytes\tsha256 of (name, size, sha256) of its files\n"
# Snakemake's own file in a directory output; it is not data.
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"
# (size, mtime_ns, ctime_ns, inode, sha256) of a file, by its path relative to the dataset root.
StatCache = dict[str, list]


def manifest_path(root: str | Path) -> Path:
    root = Path(root)
    return root.with_name(root.name + MANIFEST_SUFFIX)


def stat_cache_path(root: str | Path) -> Path:
    root = Path(root)
    return root.with_name(f".{root.name}{MANIFEST_SUFFIX}.stat.json")


def _data_files(root: Path) -> list[tuple[str, os.stat_result]]:
    """(path relative to root, stat) of every data file, sorted; one `scandir` per folder (cheap at VOC size)."""
    found = []
    stack = [("", str(root))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = prefix + entry.name
                if entry.is_dir(follow_symlinks=True):
                    stack.append((name + "/", entry.path))
                elif entry.name != SNAKEMAKE_TIMESTAMP and not (entry.name.startswith(".") and TMP_MARK in entry.name):
                    found.append((name, entry.stat()))
    return sorted(found, key=lambda item: item[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hashed(root: Path, cache: StatCache) -> StatCache:
    """The stat cache of `root` now; a file is hashed only when its stat differs from `cache`."""
    fresh: StatCache = {}
    for name, stat in _data_files(root):
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        cached = cache.get(name)
        sha = cached[4] if isinstance(cached, list) and len(cached) == 5 and cached[:4] == key else None
        fresh[name] = [*key, sha or _sha256(root / name)]
    return fresh


def manifest_text(files: StatCache) -> str:
    """The manifest of a stat cache: per top-level entry its file count, bytes and content digest."""
    groups: dict[str, list[tuple[str, int, str]]] = {}
    for name, (size, _mtime, _ctime, _inode, sha) in files.items():
        groups.setdefault(name.split("/", 1)[0], []).append((name, size, sha))
    lines = [HEADER]
    for entry, members in sorted(groups.items()):
        digest = hashlib.sha256("".join(f"{n}\t{s}\t{h}\n" for n, s, h in members).encode()).hexdigest()
        lines.append(f"{entry}\t{len(members)}\t{sum(s for _, s, _ in members)}\t{digest}\n")
    return "".join(lines)


def _read_cache(root: Path) -> StatCache:
    """The stat cache, or an empty one when it is missing or damaged (everything is hashed again)."""
    try:
        cache = json.loads(stat_cache_path(root).read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _read_manifest(path: Path) -> str | None:
    """The manifest's text; None when it is missing or not a manifest (then it is written anew)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return None
    except OSError as err:
        raise InputError(f"{path}: cannot read the dataset manifest ({err.strerror})") from None
    return text if text.startswith(HEADER) else None


def write_manifest(root: str | Path) -> Path:
    """Write `<root>.manifest.tsv` and its stat cache, hashing every file."""
    root = Path(root)
    files = _hashed(root, {})
    write_text(manifest_path(root), manifest_text(files))
    write_text(stat_cache_path(root), json.dumps(files))
    return manifest_path(root)


def refresh_manifest(root: str | Path) -> bool:
    """Bring the manifest up to date with the dataset's content; True if it was (re)written.

    Writes nothing when the dataset does not exist yet (the preparation stage writes both) and nothing when the
    content is unchanged, so planning leaves the files as they are. A missing or damaged manifest is written anew
    (its text is a function of the content only); a damaged stat cache only costs hashing everything once.
    """
    root = Path(root)
    if not root.is_dir():
        return False
    manifest = manifest_path(root)
    cache = _read_cache(root)
    try:
        files = _hashed(root, cache)
    except OSError as err:
        raise InputError(f"{err.filename}: cannot read a file of the dataset ({err.strerror})") from None
    text = manifest_text(files)
    changed = _read_manifest(manifest) != text
    if changed:
        write_text(manifest, text)
    if files != cache:
        write_text(stat_cache_path(root), json.dumps(files))
    return changed
