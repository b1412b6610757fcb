"""eval-masks: mIoU of pseudo-masks (random walk or CRF) on VOC train against SegmentationClass."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.voc import load_mask, read_ids, voc_dirs
from ppcseg.evaluation.miou import ConfusionMatrix, write_confusions
from ppcseg.evaluation.results import metrics_row, write_metrics_row
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("masks",)
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (SegmentationClass, ImageSets)")
    parser.add_argument("--masks", required=True, help="folder of <id>.png pseudo-masks")
    parser.add_argument("--out-metrics", required=True, help="metric row JSON")
    parser.add_argument(
        "--out-confusion",
        help="also write each image's confusion matrix (.npz: ids, confusion (N, 21, 22), last column unlabelled)",
    )


def mask_confusion(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> ConfusionMatrix:
    """The confusion matrix (21, 22) over (gt, pred) pairs, each pair's own kept; GT 255 ignored.

    A prediction of 255 (a mask that leaves pixels unlabelled) counts as wrong for the pixel's GT class and as no
    class's prediction (the last column), as in the official evaluation.
    """
    confusion = ConfusionMatrix(unlabelled=True, keep_images=True)
    for gt, pred in pairs:
        confusion.update(gt, pred)
    return confusion


def mask_iou(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per-class IoU (21,) of mask_confusion; NaN for classes absent from both GT and prediction."""
    return mask_confusion(pairs).iou()


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    split = params["masks"]["split"]
    root = Path(args.data)
    ids = read_ids(root, split)

    def pairs():
        for image_id in progress(ids, desc="eval-masks"):
            gt = load_mask(voc_dirs(root)["masks"] / f"{image_id}.png")
            yield gt, load_mask(Path(args.masks) / f"{image_id}.png", expected_shape=gt.shape)

    confusion = mask_confusion(pairs())
    row = metrics_row("mask", split, confusion.iou(), len(ids), {"masks": Path(args.masks).name})
    if args.out_confusion:
        write_confusions(args.out_confusion, ids, confusion.images())
    write_metrics_row(args.out_metrics, row)
    log.info("pseudo-masks %s on %s (%d images): mIoU %.2f", args.masks, split, len(ids), row["mIoU"])
