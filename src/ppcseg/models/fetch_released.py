"""Stage `fetch-released`: download the authors' released checkpoint named in `<stage>.released` (README "Start from
the released models"), verified like every download (sha256 or md5, or the lock file's record of a first download).

    ppcseg fetch-released --params P --entry cam --out data/released/cam.pth

`ppcseg convert-released` then turns it into the checkpoint that the stage's training would have written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ppcseg.data.download import LOCK_FILE, download
from ppcseg.utils.errors import InputError

PARAMS_KEYS: tuple[str, ...] = ("{entry}.released",)
STAGES: tuple[str, ...] = ("cam", "affinity", "segmentation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entry", required=True, choices=STAGES, help="whose `<entry>.released` to download")
    parser.add_argument("--out", required=True, type=Path, help="where the verified file is written")
    parser.add_argument("--lock-file", type=Path, default=LOCK_FILE, help="SHA-256 records of unpublished checksums")


def released_entry(params: dict[str, Any], stage: str) -> dict[str, Any]:
    entry = params[stage].get("released")
    if not entry:
        raise InputError(f"{stage}.released is not set: give url, sha256 (or md5) and layout of the released file")
    return entry


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    entry = released_entry(params, args.entry)
    # The lock file names the stage's files '<stage>_released' (records per URL, so every route's files live side by
    # side); messages name the params key as the user writes it.
    download(
        entry.get("url"),
        args.out,
        sha256=entry.get("sha256"),
        md5=entry.get("md5"),
        key=f"{args.entry}.released",
        lock_file=args.lock_file,
        lock_name=f"{args.entry}_released",
    )
