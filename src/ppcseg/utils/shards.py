"""Shards of the per-image stages (docs/slurm-and-dvc.md: execution.shards) and the listing of a finished folder.

A per-image stage run with `--shard I/K` (1-based: 1/K .. K/K) processes the images `ids[I-1::K]` of its list.
Every finished per-image folder, whole or a shard, holds a listing (`LISTING`) naming the stage, the settings it was
made with and the files it wrote (plus the shard, for a shard): `ppcseg merge-shards` (workflow/merge_shards.py)
checks it when it joins the K folders, and the workflow checks a finished folder against it before planning
(`lost_files`), so a folder that lost files is never taken as complete.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ppcseg.utils.errors import InputError
from ppcseg.utils.io import write_json

LISTING = ".ppcseg-files.json"
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """The `index`-th (1-based) of `count` disjoint parts of an image list."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, ids: list[T]) -> list[T]:
        """This shard's part: every `count`-th item from item `index` - 1 (deterministic, parts disjoint, union all)."""
        return ids[self.index - 1 :: self.count]


def parse_shard(text: str | None) -> Shard | None:
    """`I/K` with 1 <= I <= K, or None for no flag (the whole list)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise InputError(f"--shard {text!r}: expected I/K, e.g. 2/8 (the 2nd of 8 parts, 1-based)")
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise InputError(f"--shard {text}: the number of shards K must be at least 1")
    if not 1 <= index <= count:
        raise InputError(f"--shard {text}: the shard I must be between 1 and K = {count} (1-based)")
    return Shard(index, count)


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/K",
        help="process only the I-th (1-based) of K disjoint parts of the image list (ids[I-1::K]); "
        "`ppcseg merge-shards` joins the K folders",
    )


def write_listing(folder: Path, stage: str, settings: dict, files: list[str], shard: Shard | None = None) -> None:
    """The listing of a finished folder; files sorted, so that K shards merged give the bytes one job writes."""
    listing = {"stage": stage, "settings": settings, "files": sorted(files)}
    write_json(folder / LISTING, listing if shard is None else {**listing, "shard": str(shard)})


def missing_outputs(out: str | Path, expected: Iterable[str]) -> list[str]:
    """The expected files not present in `out` (one listing per subfolder: cheap on 10 000 files)."""
    out = Path(out)
    listings: dict[str, set[str]] = {}
    missing = []
    for name in expected:
        folder, _, base = name.rpartition("/")
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(out / folder))
            except OSError:
                listings[folder] = set()
        if base not in listings[folder]:
            missing.append(name)
    return missing


def lost_files(folder: str | Path) -> list[str]:
    """The files a finished folder's listing names that are gone; none for a folder without a readable listing."""
    try:
        files = json.loads((Path(folder) / LISTING).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return missing_outputs(folder, map(str, files))
