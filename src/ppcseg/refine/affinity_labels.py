"""affinity-labels: low/high-alpha hard-label CRF maps that supervise AffinityNet (docs/faithfulness.md).

For each alpha the background score is (1 - max_fg CAM)^alpha; the argmax over [background, CAMs] is refined by a
hard-label dense CRF over all 21 VOC labels (as the official code saves full 21-channel arrays, which sets the
unary of every other label to (1 - gt_prob) / 20), its kernels built in (y, x, r, g, b) feature order as the official
code builds them ((x, y, ...) with `affinity.fix_crf_feature_order`), and its argmax is saved: <out>/la/<id>.png,
<out>/ha/<id>.png.
A low alpha gives a large background score, so la's foreground is confident; a high alpha shrinks the
background score, so what ha still calls background is confident background.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.cams import channel_labels, load_cams
from ppcseg.data.voc import NUM_CLASSES, load_image, save_mask, voc_dirs
from ppcseg.refine.crf import crf_from_labels
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

PARAMS_KEYS: tuple[str, ...] = (
    "affinity.low_alpha",
    "affinity.high_alpha",
    "affinity.crf",
    "affinity.fix_crf_feature_order",
)
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (JPEGImages, ImageSets, cls_labels.json)")
    parser.add_argument("--cams", required=True, help="folder of <id>.npz CAM files written by infer-cam")
    parser.add_argument("--out", required=True, help="output folder; gets la/<id>.png and ha/<id>.png")
    add_shard_argument(parser)


def background_argmax(classes: np.ndarray, cams: np.ndarray, alpha: float) -> np.ndarray:
    """VOC label map (H, W) of argmax over [(1 - max CAM)^alpha, CAMs]; background wins ties."""
    if cams.shape[0] == 0:
        return np.zeros(cams.shape[1:], dtype=np.int64)
    bg = np.power(1.0 - cams.max(axis=0, keepdims=True), alpha)
    lookup = channel_labels(classes)
    return lookup[np.argmax(np.concatenate([bg, cams]), axis=0)]


def alpha_label_map(
    image: np.ndarray, classes: np.ndarray, cams: np.ndarray, alpha: float, crf: dict, *, yx_features: bool = True
) -> np.ndarray:
    """The CRF-refined hard label map (H, W) uint8 of one alpha; `yx_features` as in `crf_from_labels`."""
    hard = background_argmax(classes, cams, alpha)
    # pydensecrf needs a writable image buffer; decoded images are read-only views.
    writable = np.require(image, requirements=["C", "W"])
    marginals = crf_from_labels(writable, hard, NUM_CLASSES, **crf, yx_features=yx_features)
    return np.argmax(marginals, axis=0).astype(np.uint8)


_STATE: dict[str, Any] = {}


def _init(root: Path, cams_dir: Path, out: Path, labels: dict[str, list[int]], cfg: dict[str, Any]) -> None:
    _STATE.update(root=root, cams=cams_dir, out=out, labels=labels, cfg=cfg)


def _work(image_id: str) -> None:
    cfg = _STATE["cfg"]
    image = load_image(voc_dirs(_STATE["root"])["images"] / f"{image_id}.jpg")
    classes, cams = load_cams(_STATE["cams"], image_id, _STATE["labels"][image_id], image.shape[:2])
    yx = not cfg["fix_crf_feature_order"]
    for name, alpha in (("la", cfg["low_alpha"]), ("ha", cfg["high_alpha"])):
        mask = alpha_label_map(image, classes, cams, alpha, cfg["crf"], yx_features=yx)
        save_mask(_STATE["out"] / name / f"{image_id}.png", mask)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    cfg = params["affinity"]
    root = Path(args.data)
    cams_dir = Path(args.cams)
    shard = parse_shard(args.shard)
    ids = stage_ids("affinity_labels", root, params, shard)
    labels = check_labels(root, ids)
    identity = fingerprint(
        params,
        PARAMS_KEYS,
        {"data": image_inputs(root, ids), "cams": folder_inputs(cams_dir, [f"{i}.npz" for i in ids])},
        shard,
    )
    work = open_partial(args.out, identity)
    todo = pending(ids, work, ("la", "ha"))
    log.info(
        "affinity-labels: %d images, %d already done, alphas %s/%s",
        len(ids),
        len(ids) - len(todo),
        cfg["low_alpha"],
        cfg["high_alpha"],
    )
    per_image_pool(_work, todo, args.threads, "affinity-labels", _init, (root, cams_dir, work, labels, cfg))
    finish_partial(args.out, stage_outputs("affinity_labels", root, params, shard), identity, shard, "affinity_labels")
