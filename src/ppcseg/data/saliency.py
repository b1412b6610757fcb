"""prepare-saliency: unpack the EPS route's saliency maps (PFAN, one greyscale <id>.png per image) into a folder."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ppcseg.data.extract import extract_archive
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_dir

PARAMS_KEYS: tuple[str, ...] = ("data.sources.saliency",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", required=True, help="saliency archive (zip or tar) from the download stage")
    parser.add_argument("--out", required=True, help="folder of <id>.png saliency maps")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    out = Path(args.out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as scratch:
        unpacked = Path(scratch) / "unpacked"
        extract_archive(Path(args.archive), unpacked)
        maps = sorted(unpacked.rglob("*.png"))
        if not maps:
            raise InputError(f"{args.archive}: no .png saliency maps inside")
        with atomic_dir(out) as tmp:
            for path in sorted(maps, key=lambda m: not m.is_symlink()):  # links first, while their targets are there
                target = tmp / path.name
                if target.exists():
                    raise InputError(f"{args.archive}: two saliency maps named {path.name}")
                if path.is_symlink():
                    # A link of the archive (checked to stay inside it) would point elsewhere once moved, possibly out
                    # of the folder: keep its content instead, so the folder holds plain files only.
                    shutil.copyfile(path, target)
                else:
                    shutil.move(path, target)
