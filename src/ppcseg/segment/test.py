"""Stage `eval-seg`: mIoU of the trained segmentation network on a VOC split with ground truth.

    ppcseg eval-seg --params params.yaml --data ROOT --checkpoint CKPT --protocol single|msf-crf --out-metrics JSON

Protocols: `single` is one forward pass at the original size and argmax. `msf-crf` is the paper's: the image at every
`segmentation.test.scales` (and mirrored when `flip`), logits resized to the image and averaged, softmax, dense CRF
with `segmentation.test.crf_params` (when `crf`), argmax. The CRF may only choose among the labels the network
predicted for that image, so it refines boundaries but never adds a class. mIoU uses the pipeline's ConfusionMatrix.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ppcseg.data.voc import load_image, load_mask, read_ids, voc_dirs
from ppcseg.evaluation.miou import ConfusionMatrix
from ppcseg.evaluation.results import metrics_row, write_metrics_row
from ppcseg.refine.crf import crf_from_probs
from ppcseg.segment.checkpoint import load_segmentor
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("segmentation",)
PROTOCOLS: tuple[str, ...] = ("single", "msf-crf")
STAGE_NAMES = {"single": "segmentation", "msf-crf": "segmentation-msf-crf"}
log = logging.getLogger("ppcseg")


@dataclass(frozen=True)
class InferenceProtocol:
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crf_params: dict[str, float] | None = field(default=None)

    @classmethod
    def from_params(cls, name: str, test: dict[str, Any]) -> InferenceProtocol:
        if name == "single":
            return cls()
        return cls(
            tuple(float(s) for s in test["scales"]), bool(test["flip"]), test["crf_params"] if test["crf"] else None
        )

    def settings(self) -> dict[str, Any]:
        return {"scales": list(self.scales), "flip": self.flip, "crf": self.crf_params is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC root (JPEGImages, SegmentationClass, ImageSets)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by train-seg --out")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="single")
    parser.add_argument("--out-metrics", required=True, help="metrics row (JSON)")
    parser.add_argument("--split", default="val", help="split with SegmentationClass ground truth")


def _normalise(model: torch.nn.Module, image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> (1, 3, H, W) normalised like the model's data preprocessor (whose mean is RGB)."""
    pre = model.data_preprocessor
    x = torch.as_tensor(np.array(image)).permute(2, 0, 1).float().to(pre.mean.device)
    return ((x - pre.mean) / pre.std).unsqueeze(0)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, image: np.ndarray, scales: tuple[float, ...] = (1.0,), flip: bool = False
) -> torch.Tensor:
    """Mean over scales (and mirror images) of the logits resized to the image: (C, H, W) float32 on the CPU."""
    height, width = image.shape[:2]
    x = _normalise(model, image)
    total, count = None, 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        xs = x if size == (height, width) else F.interpolate(x, size, mode="bilinear", align_corners=False)
        batch = torch.cat([xs, xs.flip(-1)]) if flip else xs
        metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)] * batch.shape[0]
        logits = model.encode_decode(batch, metas)
        if flip:
            logits = torch.stack([logits[0], logits[1].flip(-1)])
        logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False).sum(0)
        total = logits if total is None else total + logits
        count += batch.shape[0]
    return (total / count).float().cpu()


def predict_labels(model: torch.nn.Module, image: np.ndarray, protocol: InferenceProtocol) -> np.ndarray:
    """Label map uint8 (H, W) of one RGB image under a test protocol."""
    logits = predict_logits(model, image, protocol.scales, protocol.flip)
    labels = logits.argmax(0).numpy().astype(np.uint8)
    if protocol.crf_params is None:
        return labels
    probs = torch.softmax(logits, 0).numpy()
    q = crf_from_probs(np.array(image), probs, **protocol.crf_params)  # pydensecrf needs a writable buffer
    absent = np.setdiff1d(np.arange(q.shape[0]), np.unique(labels))
    q[absent] = -np.inf  # the CRF refines the network's classes, it never introduces a new one
    return q.argmax(0).astype(np.uint8)


def evaluate(
    model: torch.nn.Module, root: str | Path, split: str, protocol: InferenceProtocol
) -> tuple[np.ndarray, int]:
    """Per-class IoU over a split, and the number of images."""
    dirs = voc_dirs(root)
    ids = read_ids(root, split)
    confusion = ConfusionMatrix()
    for image_id in progress(ids, desc=f"eval-seg {split}"):
        image = load_image(dirs["images"] / f"{image_id}.jpg")
        gt = load_mask(dirs["masks"] / f"{image_id}.png", expected_shape=image.shape[:2])
        confusion.update(gt, predict_labels(model, image, protocol))
    return confusion.iou(), len(ids)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    protocol = InferenceProtocol.from_params(args.protocol, params["segmentation"]["test"])
    model, meta = load_segmentor(args.checkpoint, device())
    iou, n_images = evaluate(model, args.data, args.split, protocol)
    settings = {"protocol": args.protocol, "config": meta["config_name"], "iter": meta["iter"], **protocol.settings()}
    row = metrics_row(STAGE_NAMES[args.protocol], args.split, iou, n_images, settings)
    write_metrics_row(args.out_metrics, row)
    log.info("eval-seg: %s on %s (%d images): mIoU %.2f", args.protocol, args.split, n_images, row["mIoU"])
