"""merge-shards: one per-image folder from the folders of its shard jobs (docs/slurm-and-dvc.md: execution.shards).

The K folders of a stage run with `--shard I/K` (utils/shards.py) become the stage's folder: hard links (a copy where
the filesystem has none), so the merged files are the shard jobs' bytes, the same bytes a single job writes (per-image
outputs depend on their image only), with the listing one job writes. It refuses a missing, repeated or foreign shard,
shards made with other settings, a file listed by two shards, a listed file that is gone or is a link, and a file that
no shard lists, and writes nothing then; the folder appears whole or not at all.
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
from ppcseg.utils.shards import LISTING, parse_shard, write_listing

# merge-shards reads no params: the shard listings carry everything it checks.
PARAMS_KEYS: tuple[str, ...] = ()
# Not outputs of a stage: the listing, and the marker Snakemake leaves in every directory output (it writes its own
# into the merged folder).
NOT_OUTPUTS = {LISTING, ".snakemake_timestamp"}
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the merged folder, as one job of the stage would write it")
    parser.add_argument("shards", nargs="+", metavar="SHARD_DIR", help="the K shard folders, in any order")


def _read_listing(folder: Path) -> dict[str, Any]:
    path = folder / LISTING
    try:
        listing = json.loads(path.read_text())
        stage, settings, files = listing["stage"], listing["settings"], listing["files"]
        shard = parse_shard(listing["shard"])
    except FileNotFoundError:
        raise InputError(f"{path}: not found; {folder} is not the folder of a finished shard job") from None
    except (ValueError, KeyError, TypeError, InputError) as err:
        raise InputError(f"{path}: not a shard listing ({err})") from None
    if not isinstance(stage, str) or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise InputError(f"{path}: not a shard listing (stage or files of the wrong type)")
    return {"stage": stage, "settings": settings, "shard": shard, "files": files}


def plan_merge(folders: list[Path]) -> tuple[dict[str, Path], dict[str, Any]]:
    """(merged name -> the shard file it comes from, the common listing), after every check (raises InputError naming
    the folder/file)."""
    manifests = [(folder, _read_listing(folder)) for folder in folders]
    first = folders[0]
    stage, count = manifests[0][1]["stage"], manifests[0][1]["shard"].count
    settings = manifests[0][1]["settings"]
    seen: dict[int, Path] = {}
    for folder, manifest in manifests:
        shard = manifest["shard"]
        if manifest["stage"] != stage or shard.count != count:
            raise InputError(
                f"{folder}: shard {shard} of {manifest['stage']}, but {first} is a shard of {count} of {stage}"
            )
        if manifest["settings"] != settings:
            changed = sorted(
                k for k in {*manifest["settings"], *settings} if manifest["settings"].get(k) != settings.get(k)
            )
            raise InputError(f"{folder}: made with other settings than {first} ({', '.join(changed)})")
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
        if links := sorted(name for name in listed if (folder / name).is_symlink()):
            raise InputError(f"{folder / links[0]}: a link, not a file the shard job wrote; run the shard again")
        present = {
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name not in NOT_OUTPUTS
        }
        if gone := sorted(listed - present):
            raise InputError(f"{folder}: {len(gone)} listed file(s) missing, e.g. {folder / gone[0]}")
        if extra := sorted(present - listed):
            raise InputError(f"{folder}: {len(extra)} file(s) no shard wrote, e.g. {folder / extra[0]}")
    return sources, {"stage": stage, "settings": settings}


def merge_shards(folders: list[Path], out: Path) -> int:
    """Build `out` from the shard folders (see the module's doc); returns the number of files."""
    sources, common = plan_merge(folders)
    with atomic_dir(out) as tmp:
        write_listing(tmp, common["stage"], common["settings"], list(sources))
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
