"""eval-seeds: mIoU of CAM seeds on VOC train against SegmentationClass, at a fixed background score and swept.

Seed prediction at background score t (docs/faithfulness.md): argmax over [t, CAMs], absent classes 0, in float32 as the
official code fills t into a float32 array. Ties go to background (first index), so a pixel is foreground iff its max
CAM > float32(t), and then takes the present class with the highest CAM (the lower class index on ties).
All thresholds come from one pass: each pixel's prediction as a function of t changes only once, at its max CAM, so
binning the max CAM against the sorted thresholds gives every threshold's confusion matrix from one bincount.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ppcseg.data.cams import load_cams
from ppcseg.data.voc import IGNORE_INDEX, NUM_CLASSES, check_labels, load_mask, read_ids, voc_dirs
from ppcseg.evaluation.miou import iou_from_confusion, mean_iou, write_confusions
from ppcseg.evaluation.results import metrics_row, write_metrics_row
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import write_text
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("seeds",)
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (SegmentationClass, ImageSets, cls_labels.json)")
    parser.add_argument("--cams", required=True, help="folder of <id>.npz CAM files written by infer-cam")
    parser.add_argument("--out-metrics", required=True, help="metric row JSON (fixed background threshold)")
    parser.add_argument("--out-curve", required=True, help="CSV threshold,mIoU of the GT-tuned sweep (dvc plots)")
    parser.add_argument(
        "--out-confusion",
        help="also write each image's confusion matrix at the fixed threshold (.npz: ids, confusion (N, 21, 21))",
    )


MAX_SWEEP = 1000


def sweep_thresholds(start: float, stop: float, step: float) -> np.ndarray:
    """start, start+step, ... < stop, rounded so that 0.27 is the double nearest 0.27 (as i/100 in the official code)."""
    if step <= 0 or stop <= start:
        raise InputError(f"seeds.sweep: need start < stop and step > 0, got [{start}, {stop}, {step}]")
    span = (stop - start) / step
    if span > MAX_SWEEP:
        # The sweep keeps a confusion matrix per threshold: a step of 1e-12 would ask for terabytes.
        raise InputError(f"seeds.sweep: [{start}, {stop}, {step}] gives {span:.3g} thresholds, at most {MAX_SWEEP}")
    count = round(span) if abs(span - round(span)) < 1e-6 else math.ceil(span)
    return np.round(start + step * np.arange(count), 10)


def _sorted_thresholds(thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds as float32, ascending; the order that sorts them)."""
    thr = np.asarray(thresholds, dtype=np.float32)
    order = np.argsort(thr, kind="stable")
    return thr[order], order


def _image_counts(gt: np.ndarray, classes: np.ndarray, cams: np.ndarray, sorted_thr: np.ndarray) -> np.ndarray:
    """counts[b, g, a] of one image, flat: pixels with GT g, winning class a, and max CAM above exactly the b lowest
    thresholds."""
    keep = gt.reshape(-1) != IGNORE_INDEX
    g = gt.reshape(-1)[keep].astype(np.int64)
    if cams.shape[0] == 0:
        top = np.zeros(g.size, dtype=np.float32)
        winner = np.zeros(g.size, dtype=np.int64)
    else:
        flat = cams.reshape(cams.shape[0], -1)[:, keep]
        best = np.argmax(flat, axis=0)
        top = flat[best, np.arange(flat.shape[1])].astype(np.float32)
        winner = np.asarray(classes, dtype=np.int64)[best]
    if g.size and g.max() >= NUM_CLASSES:
        raise InputError(f"ground truth holds labels outside 0-20 and 255: {np.unique(g).tolist()}")
    above = np.searchsorted(sorted_thr, top, side="left")  # number of thresholds t with t < max CAM
    c2 = NUM_CLASSES * NUM_CLASSES
    return np.bincount((above * NUM_CLASSES + g) * NUM_CLASSES + winner, minlength=(sorted_thr.size + 1) * c2)


def _confusion_from_counts(counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Confusion matrices (T, 21, 21) from flat counts (_image_counts, or their sum: the map is linear)."""
    counts = counts.reshape(order.size + 1, NUM_CLASSES, NUM_CLASSES)
    # Sorted threshold j: foreground for pixels with b > j, background for b <= j.
    fg = np.cumsum(counts[::-1], axis=0)[::-1][1:]  # sum over b > j
    bg_rows = np.cumsum(counts.sum(axis=2), axis=0)[:-1]  # sum over b <= j, per GT class
    conf_sorted = fg.copy()
    conf_sorted[:, :, 0] += bg_rows
    conf = np.empty_like(conf_sorted)
    conf[order] = conf_sorted
    return conf


def sweep_confusion(
    cams_iter: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], thresholds: Sequence[float]
) -> np.ndarray:
    """Confusion matrices (T, 21, 21) (rows GT, columns prediction) of the seeds at every threshold.

    `cams_iter` yields (gt (H, W) uint8 with 255 ignored, classes (K,) VOC indices, cams (K, H, W)).
    """
    sorted_thr, order = _sorted_thresholds(thresholds)
    counts = np.zeros((sorted_thr.size + 1) * NUM_CLASSES * NUM_CLASSES, dtype=np.int64)
    for gt, classes, cams in cams_iter:
        counts += _image_counts(gt, classes, cams, sorted_thr)
    return _confusion_from_counts(counts, order)


def sweep_confusion_by_image(
    cams_iter: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], thresholds: Sequence[float], keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """sweep_confusion, and each image's confusion matrix (N, 21, 21) at thresholds[keep]: the same integer counts,
    so the images' matrices sum exactly to the total's matrix at that threshold."""
    sorted_thr, order = _sorted_thresholds(thresholds)
    counts = np.zeros((sorted_thr.size + 1) * NUM_CLASSES * NUM_CLASSES, dtype=np.int64)
    per_image = []
    for gt, classes, cams in cams_iter:
        image = _image_counts(gt, classes, cams, sorted_thr)
        counts += image
        per_image.append(_confusion_from_counts(image, order)[keep])
    images = np.stack(per_image) if per_image else np.zeros((0, NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    return _confusion_from_counts(counts, order), images


def image_size(root: Path, image_id: str) -> tuple[int, int]:
    """(H, W) of an image from its header alone."""
    path = voc_dirs(root)["images"] / f"{image_id}.jpg"
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except (OSError, SyntaxError) as err:
        raise InputError(f"{path}: cannot read image ({err})") from err


def check_labels_match_mask(root: Path, image_id: str, classes: list[int], gt: np.ndarray) -> None:
    """The image-level labels must name exactly the classes of the ground-truth mask."""
    in_mask = sorted(int(c) for c in np.unique(gt) if 0 < c < NUM_CLASSES)
    if in_mask != sorted(classes):
        raise InputError(
            f"{voc_dirs(root)['labels']}: labels of '{image_id}' are {sorted(classes)} but its mask "
            f"{voc_dirs(root)['masks'] / (image_id + '.png')} holds classes {in_mask}"
        )


def _dataset(root: Path, cams_dir: Path, ids: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    labels = check_labels(root, ids)
    masks_dir = voc_dirs(root)["masks"]
    for image_id in progress(ids, desc="eval-seeds"):
        gt = load_mask(masks_dir / f"{image_id}.png", expected_shape=image_size(root, image_id))
        check_labels_match_mask(root, image_id, labels[image_id], gt)
        classes, cams = load_cams(cams_dir, image_id, labels[image_id], gt.shape)
        yield gt, classes, cams


def curve_csv(thresholds: np.ndarray, mious: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["threshold", "mIoU"])
    for t, m in zip(thresholds, mious, strict=True):
        writer.writerow([f"{t:g}", f"{100 * m:.2f}"])
    return buffer.getvalue()


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    cfg = params["seeds"]
    root = Path(args.data)
    ids = read_ids(root, cfg["split"])
    sweep = sweep_thresholds(*cfg["sweep"])
    fixed = float(cfg["bg_threshold"])
    conf, per_image = sweep_confusion_by_image(_dataset(root, Path(args.cams), ids), [*sweep, fixed], keep=-1)
    ious = iou_from_confusion(conf)
    mious = np.array([mean_iou(i) for i in ious[:-1]])
    best = int(np.nanargmax(mious))
    settings = {
        "bg_threshold": fixed,
        "gt_tuned_bg_threshold": float(sweep[best]),
        "gt_tuned_mIoU": round(100 * float(mious[best]), 2),
    }
    row = metrics_row("seed", cfg["split"], ious[-1], len(ids), settings)
    if args.out_confusion:
        write_confusions(args.out_confusion, ids, per_image)
    write_metrics_row(args.out_metrics, row)
    write_text(args.out_curve, curve_csv(sweep, mious))
    log.info(
        "seeds on %s (%d images): mIoU %.2f at bg %.2f; GT-tuned %.2f at bg %g",
        cfg["split"],
        len(ids),
        row["mIoU"],
        fixed,
        settings["gt_tuned_mIoU"],
        settings["gt_tuned_bg_threshold"],
    )
