"""merge-shards: one per-image folder from the folders of its shard jobs (README, "Slurm": execution.shards).

The K folders of a stage run with `--shard I/K` (utils/shards.py) become the stage's folder: hard links (a copy where
the filesystem has none), so the merged files are the shard jobs' bytes, the same bytes a single job writes (per-image
outputs depend on their image only). It refuses a missing, repeated or foreign shard, a file listed by two shards, a
listed file that is gone and a file that no shard lists, and writes nothing then; the folder appears whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_dir
from ppcseg.utils.shards import MANIFEST, parse_shard

# merge-shards reads no params: the shard manifests carry everything it checks.
PARAMS_KEYS: tuple[str, ...] = ()
# Not outputs of a stage: the manifest, and the marker Snakemake leaves in every directory output (it writes its own
# into the merged folder).
NOT_OUTPUTS = {MANIFEST, ".snakemake_timestamp"}
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the merged folder, as one job of the stage would write it")
    parser.add_argument("shards", nargs="+", metavar="SHARD_DIR", help="the K shard folders, in any order")


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        stage, shard, files = manifest["stage"], parse_shard(manifest["shard"]), manifest["files"]
    except FileNotFoundError:
        raise InputError(f"{path}: not found; {folder} is not the folder of a finished shard job") from None
    except (ValueError, KeyError, TypeError, InputError) as err:
        raise InputError(f"{path}: not a shard manifest ({err})") from None
    if not isinstance(stage, str) or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise InputError(f"{path}: not a shard manifest (stage or files of the wrong type)")
    return {"stage": stage, "shard": shard, "files": files}


def plan_merge(folders: list[Path]) -> dict[str, Path]:
    """Merged name -> the shard file it comes from, after every check (raises InputError naming the folder/file)."""
    manifests = [(folder, _read_manifest(folder)) for folder in folders]
    first = folders[0]
    stage, count = manifests[0][1]["stage"], manifests[0][1]["shard"].count
    seen: dict[int, Path] = {}
    for folder, manifest in manifests:
        shard = manifest["shard"]
        if manifest["stage"] != stage or shard.count != count:
            raise InputError(
                f"{folder}: shard {shard} of {manifest['stage']}, but {first} is a shard of {count} of {stage}"
            )
        if shard.index in seen:
            raise InputError(f"{folder}: shard {shard} given twice (also {seen[shard.index]})")
        seen[shard.index] = folder
    absent = [f"{i}/{count}" for i in range(1, count + 1) if i not in seen]
    if absent:
        raise InputError(f"{stage}: shard(s) {', '.join(absent)} missing (got {len(folders)} of {count} folders)")
    sources: dict[str, Path] = {}
    for folder, manifest in manifests:
        for name in manifest["files"]:
            if name in sources:
                raise InputError(f"{name}: written by two shards, {sources[name].parent} and {folder}")
            sources[name] = folder / name
        listed = set(manifest["files"])
        present = {
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name not in NOT_OUTPUTS
        }
        if gone := sorted(listed - present):
            raise InputError(f"{folder}: {len(gone)} listed file(s) missing, e.g. {folder / gone[0]}")
        if extra := sorted(present - listed):
            raise InputError(f"{folder}: {len(extra)} file(s) no shard wrote, e.g. {folder / extra[0]}")
    return sources


def merge_shards(folders: list[Path], out: Path) -> int:
    """Build `out` from the shard folders (see the module's doc); returns the number of files."""
    sources = plan_merge(folders)
    with atomic_dir(out) as tmp:
        for name, source in sorted(sources.items()):
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:  # no hard links here (another filesystem, a FAT volume): copy the bytes
                shutil.copy2(source, target)
    return len(sources)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    folders = [Path(f) for f in args.shards]
    count = merge_shards(folders, Path(args.out))
    log.info("merge-shards: %d files from %d shard folders -> %s", count, len(folders), args.out)
