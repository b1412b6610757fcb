"""crf-masks: EPS-route pseudo-masks by soft dense CRF on [(1 - max CAM)^alpha, CAMs] (docs/faithfulness.md).

The CRF runs over the K + 1 present labels (background first), as the official `crf_inference` call does, and its
argmax is mapped back to VOC indices -> <out>/<id>.png for train_aug.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.cams import channel_labels, load_cams
from ppcseg.data.voc import load_image, save_mask, voc_dirs
from ppcseg.per_image import Context, PerImageStage, add_per_image_arguments, folder_inputs, run_per_image
from ppcseg.refine.crf import CrfSettings, crf_from_probs

PARAMS_KEYS: tuple[str, ...] = ("crf_masks",)
# pydensecrf's unary_from_softmax, used by the official code, clips probabilities to [1e-5, 1] before -log.
PROB_CLIP = 1e-5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_per_image_arguments(parser, "output folder of <id>.png pseudo-masks")
    parser.add_argument("--cams", required=True, help="folder of <id>.npz CAM files written by infer-cam")


def crf_mask(image: np.ndarray, classes: np.ndarray, cams: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """Pseudo-mask (H, W) uint8 in VOC indices of one image."""
    if cams.shape[0] == 0:
        return np.zeros(image.shape[:2], dtype=np.uint8)
    bg = np.power(1.0 - cams.max(axis=0, keepdims=True), cfg["alpha"])
    probs = np.clip(np.concatenate([bg, cams]), PROB_CLIP, 1.0)
    q = crf_from_probs(
        np.require(image, requirements=["C", "W"]),  # pydensecrf needs a writable buffer
        probs,
        CrfSettings.from_params(cfg),
    )
    lookup = channel_labels(classes).astype(np.uint8)
    return lookup[np.argmax(q, axis=0)]


def _work(image_id: str, ctx: Context, state: None) -> None:
    image = load_image(voc_dirs(ctx.root)["images"] / f"{image_id}.jpg")
    classes, cams = load_cams(ctx.args.cams, image_id, ctx.labels[image_id], image.shape[:2])
    save_mask(ctx.out / f"{image_id}.png", crf_mask(image, classes, cams, ctx.params["crf_masks"]))


STAGE = PerImageStage(
    name="crf_masks",
    params_keys=PARAMS_KEYS,
    outputs=("{}.png",),
    splits=lambda args, params: ["train_aug"],
    inputs=lambda args, ids: {"cams": folder_inputs(Path(args.cams), [f"{i}.npz" for i in ids])},
    work=_work,
    pooled=True,
    describe=lambda params: f"alpha {params['crf_masks']['alpha']}, iters {params['crf_masks']['iters']}",
)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_per_image(STAGE, args, params)
