"""crf-masks: EPS-route pseudo-masks by soft dense CRF on [(1 - max CAM)^alpha, CAMs] (docs/faithfulness.md).

The CRF runs over the K + 1 present labels (background first), as the official `crf_inference` call does, and its
argmax is mapped back to VOC indices -> <out>/<id>.png for train_aug.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.cams import channel_labels, load_cams
from ppcseg.data.voc import load_image, save_mask, voc_dirs
from ppcseg.refine.crf import crf_from_probs
from ppcseg.utils.per_image import (
    check_labels,
    fingerprint,
    finish_partial,
    folder_inputs,
    image_inputs,
    open_partial,
    pending,
    per_image_pool,
    stage_ids,
    stage_outputs,
)
from ppcseg.utils.shards import add_shard_argument, parse_shard

PARAMS_KEYS: tuple[str, ...] = ("crf_masks",)
# pydensecrf's unary_from_softmax, used by the official code, clips probabilities to [1e-5, 1] before -log.
PROB_CLIP = 1e-5
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (JPEGImages, ImageSets, cls_labels.json)")
    parser.add_argument("--cams", required=True, help="folder of <id>.npz CAM files written by infer-cam")
    parser.add_argument("--out", required=True, help="output folder of <id>.png pseudo-masks")
    add_shard_argument(parser)


def crf_mask(image: np.ndarray, classes: np.ndarray, cams: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """Pseudo-mask (H, W) uint8 in VOC indices of one image."""
    if cams.shape[0] == 0:
        return np.zeros(image.shape[:2], dtype=np.uint8)
    bg = np.power(1.0 - cams.max(axis=0, keepdims=True), cfg["alpha"])
    probs = np.clip(np.concatenate([bg, cams]), PROB_CLIP, 1.0)
    q = crf_from_probs(
        np.require(image, requirements=["C", "W"]),  # pydensecrf needs a writable buffer
        probs,
        iters=cfg["t"],
        gaussian_sxy=cfg["gaussian_sxy"],
        gaussian_compat=cfg["gaussian_compat"],
        bilateral_sxy=cfg["bilateral_sxy"],
        bilateral_srgb=cfg["bilateral_srgb"],
        bilateral_compat=cfg["bilateral_compat"],
    )
    lookup = channel_labels(classes).astype(np.uint8)
    return lookup[np.argmax(q, axis=0)]


_STATE: dict[str, Any] = {}


def _init(root: Path, cams_dir: Path, out: Path, labels: dict[str, list[int]], cfg: dict[str, Any]) -> None:
    _STATE.update(root=root, cams=cams_dir, out=out, labels=labels, cfg=cfg)


def _work(image_id: str) -> None:
    image = load_image(voc_dirs(_STATE["root"])["images"] / f"{image_id}.jpg")
    classes, cams = load_cams(_STATE["cams"], image_id, _STATE["labels"][image_id], image.shape[:2])
    save_mask(_STATE["out"] / f"{image_id}.png", crf_mask(image, classes, cams, _STATE["cfg"]))


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    cfg = params["crf_masks"]
    root = Path(args.data)
    cams_dir = Path(args.cams)
    shard = parse_shard(args.shard)
    ids = stage_ids("crf_masks", root, params, shard)
    labels = check_labels(root, ids)
    identity = fingerprint(
        params,
        PARAMS_KEYS,
        {"data": image_inputs(root, ids), "cams": folder_inputs(cams_dir, [f"{i}.npz" for i in ids])},
        shard,
    )
    work = open_partial(args.out, identity)
    todo = pending(ids, work)
    log.info(
        "crf-masks: %d images, %d already done, alpha %s, t %s", len(ids), len(ids) - len(todo), cfg["alpha"], cfg["t"]
    )
    per_image_pool(_work, todo, args.threads, "crf-masks", _init, (root, cams_dir, work, labels, cfg))
    finish_partial(args.out, stage_outputs("crf_masks", root, params, shard), identity, shard, "crf_masks")
