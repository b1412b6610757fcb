"""Stage `eval-seg`: mIoU of the trained segmentation network on a VOC split with ground truth.

    ppcseg eval-seg --params params.yaml --data ROOT --checkpoint CKPT --protocol single|msf-crf --out-metrics JSON
        [--out-confusion NPZ]

The split is `segmentation.val_split`; the protocols are those of segment/inference.py. mIoU uses the pipeline's
ConfusionMatrix; --out-confusion also writes each image's matrix (evaluation/miou.py).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from ppcseg.data.voc import load_image, load_mask, read_ids, voc_dirs
from ppcseg.evaluation.miou import ConfusionMatrix, write_confusions
from ppcseg.evaluation.results import metrics_row, write_metrics_row
from ppcseg.segment.checkpoint import load_segmentor
from ppcseg.segment.inference import PROTOCOLS, InferenceProtocol, device, predict_labels
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("segmentation",)
STAGE_NAMES = {"single": "segmentation", "msf-crf": "segmentation-msf-crf"}
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC root (JPEGImages, SegmentationClass, ImageSets)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by train-seg --out")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="single")
    parser.add_argument("--out-metrics", required=True, help="metrics row (JSON)")
    parser.add_argument(
        "--out-confusion", help="also write each image's confusion matrix (.npz: ids, confusion (N, 21, 21))"
    )


def evaluate(
    model: torch.nn.Module, root: str | Path, split: str, protocol: InferenceProtocol
) -> tuple[list[str], ConfusionMatrix]:
    """The split's image ids and their confusion matrix (each image's kept, in the ids' order)."""
    dirs = voc_dirs(root)
    ids = read_ids(root, split)
    confusion = ConfusionMatrix(keep_images=True)
    for image_id in progress(ids, desc=f"eval-seg {split}"):
        image = load_image(dirs["images"] / f"{image_id}.jpg")
        gt = load_mask(dirs["masks"] / f"{image_id}.png", expected_shape=image.shape[:2])
        confusion.update(gt, predict_labels(model, image, protocol))
    return ids, confusion


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    protocol = InferenceProtocol.from_params(args.protocol, params["segmentation"]["test"])
    model, meta = load_segmentor(args.checkpoint, device())
    split = params["segmentation"]["val_split"]  # the split train-seg validates on too
    ids, confusion = evaluate(model, args.data, split, protocol)
    settings = {"protocol": args.protocol, "config": meta["config_name"], "iter": meta["iter"], **protocol.settings()}
    row = metrics_row(STAGE_NAMES[args.protocol], split, confusion.iou(), len(ids), settings)
    if args.out_confusion:
        write_confusions(args.out_confusion, ids, confusion.images())
    write_metrics_row(args.out_metrics, row)
    log.info("eval-seg: %s on %s (%d images): mIoU %.2f", args.protocol, split, len(ids), row["mIoU"])
