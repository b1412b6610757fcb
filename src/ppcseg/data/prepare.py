"""The `prepare-voc` stage: PASCAL VOC 2012 trainval + SBD -> the VOC layout every later stage reads.

Output (--out, usually data.root = data/VOCdevkit/VOC2012), created atomically:
  JPEGImages/ (17 125), SegmentationClass/ (2 913: train 1 464 + val 1 449, with 255 borders),
  SegmentationClassAug/ (12 031 palette PNGs: the VOC mask where one exists, else the SBD mask),
  ImageSets/Segmentation/{train,val,trainval,train_aug}.txt, cls_labels.json (classes present in each
  SegmentationClassAug mask, for train_aug and val).
train_aug is the standard 10 582-image recipe: (SBD train + SBD val + VOC train) minus VOC val.
Everything is verified before the folder appears, and all problems are reported in one error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ppcseg.data import sbd
from ppcseg.data.extract import extract_archive
from ppcseg.data.manifest import write_manifest
from ppcseg.data.voc import IGNORE_INDEX, PALETTE, load_mask, read_ids, save_mask, voc_dirs, write_class_labels
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_dir, write_text
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("data.root", "data.expect_full", "data.sources.voc", "data.sources.sbd")
FULL_COUNTS = {"JPEGImages": 17125, "train": 1464, "val": 1449, "train_aug": 10582, "SegmentationClassAug": 12031}
VOC_MEMBERS = ("JPEGImages/", "SegmentationClass/", "ImageSets/Segmentation/")
_EXAMPLES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voc-archive", required=True, type=Path, help="VOCtrainval_11-May-2012.tar")
    parser.add_argument("--sbd-archive", required=True, type=Path, help="SBD benchmark.tgz")
    parser.add_argument("--out", required=True, type=Path, help="VOC2012 folder to create (data.root)")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    # data.expect_full checks the paper's counts (17 125 JPEGs, 1 464 / 1 449 / 10 582 ids, 12 031 masks); false
    # only for a cut-down VOC (the route rehearsal's fixture archives)
    expect_full = bool(params["data"]["expect_full"])
    prepare_voc(args.voc_archive, args.sbd_archive, args.out, expect_full=expect_full, workers=args.threads or 1)
    write_manifest(args.out)  # what the workflow's rules take as the dataset's identity


def _voc_member(name: str) -> bool:
    return any(f"/{name}".find(f"/{m}") >= 0 for m in VOC_MEMBERS)


def _find_voc_root(root: Path, archive: Path) -> Path:
    for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise InputError(f"{archive}: no VOCdevkit/VOC2012/JPEGImages/ folder in the VOC archive")


def _palette_ok(img: Image.Image) -> bool:
    palette = img.getpalette() or []
    wanted = [*range(21), IGNORE_INDEX]
    return all(palette[3 * i : 3 * i + 3] == PALETTE[3 * i : 3 * i + 3] for i in wanted)


def _convert(job: tuple[str, Path, Path, Path | None, Path]) -> tuple[str, list[int], list[tuple[str, str]]]:
    """Write the SegmentationClassAug mask of one image; returns (id, classes present, problems as (kind, text))."""
    image_id, jpeg, voc_mask, sbd_mat, aug_mask = job
    problems: list[tuple[str, str]] = []
    try:
        with Image.open(jpeg) as img:
            shape = img.size[::-1]
    except FileNotFoundError:
        return image_id, [], [("missing JPEG", image_id)]
    except OSError as err:
        return image_id, [], [("unreadable JPEG", f"{image_id} ({err})")]
    try:
        if voc_mask.is_file():
            with Image.open(voc_mask) as img:
                if img.mode != "P" or not _palette_ok(img):
                    problems.append(("SegmentationClass mask without the VOC palette", image_id))
            mask = load_mask(voc_mask, expected_shape=shape)
            shutil.copyfile(voc_mask, aug_mask)
        elif sbd_mat is not None:
            if not sbd_mat.is_file():
                return image_id, [], [("missing SBD cls/<id>.mat", image_id)]
            mask = sbd.read_sbd_mask(sbd_mat)
            if mask.shape != shape:
                raise InputError(f"{sbd_mat}: mask size {mask.shape} does not match image size {shape}")
            save_mask(aug_mask, mask)
        else:
            return image_id, [], [("missing mask (neither SegmentationClass nor SBD cls/*.mat)", image_id)]
    except InputError as err:
        return image_id, [], [*problems, ("bad mask", str(err))]
    classes = [int(c) for c in np.unique(mask) if 1 <= c <= 20]
    return image_id, classes, problems


def prepare_voc(
    voc_archive: str | Path, sbd_archive: str | Path, out: str | Path, *, expect_full: bool = False, workers: int = 1
) -> Path:
    """Build the VOC2012 + SBD layout in `out` (replaced atomically); returns `out`."""
    voc_archive, sbd_archive, out = Path(voc_archive), Path(sbd_archive), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_scratch(out)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.scratch.", dir=out.parent))
    try:
        voc_src = _find_voc_root(extract_archive(voc_archive, scratch / "voc", include=_voc_member), voc_archive)
        sbd_dir = sbd.find_dataset_dir(
            extract_archive(sbd_archive, scratch / "sbd", include=sbd.wanted_member), sbd_archive
        )
        with atomic_dir(out) as tmp:
            _assemble(voc_src, voc_archive, sbd_dir, sbd_archive, tmp, expect_full=expect_full, workers=workers)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _remove_stale_scratch(out: Path) -> None:
    """Scratch and temporary folders a killed run left next to `out` (GBs for the real archives)."""
    for pattern in (f".{out.name}.scratch.*", f".{out.name}.*.tmp"):
        for stale in out.parent.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)


def _assemble(
    voc_src: Path, voc_archive: Path, sbd_dir: Path, sbd_archive: Path, root: Path, *, expect_full: bool, workers: int
) -> None:
    dirs = voc_dirs(root)
    # Same file system (the scratch folder sits next to the output): moves, not copies.
    os.replace(voc_src / "JPEGImages", dirs["images"])
    if (voc_src / "SegmentationClass").is_dir():
        os.replace(voc_src / "SegmentationClass", dirs["masks"])
    else:
        dirs["masks"].mkdir()
    dirs["lists"].parent.mkdir(parents=True)
    if not (voc_src / "ImageSets" / "Segmentation").is_dir():
        raise InputError(f"{voc_archive}: no VOCdevkit/VOC2012/ImageSets/Segmentation/ lists in the VOC archive")
    os.replace(voc_src / "ImageSets" / "Segmentation", dirs["lists"])
    dirs["masks_aug"].mkdir()

    try:
        train, val = read_ids(root, "train"), read_ids(root, "val")
    except InputError as err:
        raise InputError(f"{voc_archive}: {err}") from err
    sbd_ids = set(sbd.read_sbd_ids(sbd_dir, "train", sbd_archive)) | set(sbd.read_sbd_ids(sbd_dir, "val", sbd_archive))
    val_set = set(val)
    train_aug = sorted((sbd_ids | set(train)) - val_set)
    write_text(dirs["lists"] / "train_aug.txt", "".join(f"{i}\n" for i in train_aug))

    jobs = []
    for image_id in sorted(set(train_aug) | val_set):
        mat = sbd_dir / "cls" / f"{image_id}.mat"
        jobs.append(
            (
                image_id,
                dirs["images"] / f"{image_id}.jpg",
                dirs["masks"] / f"{image_id}.png",
                mat if image_id in sbd_ids else None,
                dirs["masks_aug"] / f"{image_id}.png",
            )
        )
    labels: dict[str, list[int]] = {}
    problems: dict[str, list[str]] = {}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(progress(pool.map(_convert, jobs, chunksize=64), total=len(jobs), desc="prepare-voc"))
    else:
        results = [_convert(job) for job in progress(jobs, desc="prepare-voc")]
    for image_id, classes, found in results:
        labels[image_id] = classes
        for kind, text in found:
            problems.setdefault(kind, []).append(text)
    for image_id in sorted(set(train) | val_set):
        if not (dirs["masks"] / f"{image_id}.png").is_file():
            problems.setdefault("missing SegmentationClass mask (train/val)", []).append(image_id)
    if expect_full:
        counts = {
            "JPEGImages": sum(1 for _ in dirs["images"].glob("*.jpg")),
            "train": len(train),
            "val": len(val),
            "train_aug": len(train_aug),
            "SegmentationClassAug": sum(1 for _ in dirs["masks_aug"].glob("*.png")),
        }
        for name, expected in FULL_COUNTS.items():
            if counts[name] != expected:
                problems.setdefault("wrong count (data.expect_full)", []).append(
                    f"{name}: {counts[name]}, expected {expected}"
                )
    if problems:
        lines = [f"{voc_archive} + {sbd_archive}: the prepared dataset is incomplete or invalid:"]
        for kind, items in problems.items():
            more = f" ... and {len(items) - _EXAMPLES} more" if len(items) > _EXAMPLES else ""
            lines.append(f"  {kind} ({len(items)}): {', '.join(items[:_EXAMPLES])}{more}")
        raise InputError("\n".join(lines))
    write_class_labels(root, labels)
