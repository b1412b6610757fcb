"""eval-masks: mIoU of pseudo-masks (random walk or CRF) on VOC train against SegmentationClass."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.voc import load_mask, read_ids, voc_dirs
from ppcseg.evaluation.miou import ConfusionMatrix
from ppcseg.evaluation.results import metrics_row, write_metrics_row
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("masks",)
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (SegmentationClass, ImageSets)")
    parser.add_argument("--masks", required=True, help="folder of <id>.png pseudo-masks")
    parser.add_argument("--out-metrics", required=True, help="metric row JSON")


def mask_iou(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per-class IoU (21,) over (gt, pred) pairs; GT 255 ignored.

    A prediction of 255 (a mask that leaves pixels unlabelled) counts as wrong for the pixel's GT class and as no
    class's prediction, as in the official evaluation; NaN for classes absent from both GT and prediction.
    """
    confusion = ConfusionMatrix(unlabelled=True)
    for gt, pred in pairs:
        confusion.update(gt, pred)
    return confusion.iou()


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    split = params["masks"]["split"]
    root = Path(args.data)
    ids = read_ids(root, split)

    def pairs():
        for image_id in progress(ids, desc="eval-masks"):
            gt = load_mask(voc_dirs(root)["masks"] / f"{image_id}.png")
            yield gt, load_mask(Path(args.masks) / f"{image_id}.png", expected_shape=gt.shape)

    row = metrics_row("mask", split, mask_iou(pairs()), len(ids), {"masks": Path(args.masks).name})
    write_metrics_row(args.out_metrics, row)
    log.info("pseudo-masks %s on %s (%d images): mIoU %.2f", args.masks, split, len(ids), row["mIoU"])
