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
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.cams import channel_labels, load_cams
from ppcseg.data.voc import NUM_CLASSES, load_image, save_mask, voc_dirs
from ppcseg.per_image import Context, PerImageStage, add_per_image_arguments, folder_inputs, run_per_image
from ppcseg.refine.crf import CrfSettings, crf_from_labels

PARAMS_KEYS: tuple[str, ...] = (
    "affinity.low_alpha",
    "affinity.high_alpha",
    "affinity.crf",
    "affinity.fix_crf_feature_order",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_per_image_arguments(parser, "output folder; gets la/<id>.png and ha/<id>.png")
    parser.add_argument("--cams", required=True, help="folder of <id>.npz CAM files written by infer-cam")


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
    """The CRF-refined hard label map (H, W) uint8 of one alpha (`crf`: the affinity.crf section); `yx_features` as
    in `crf_from_labels`."""
    hard = background_argmax(classes, cams, alpha)
    # pydensecrf needs a writable image buffer; decoded images are read-only views.
    writable = np.require(image, requirements=["C", "W"])
    settings = CrfSettings.from_params(crf)
    marginals = crf_from_labels(writable, hard, NUM_CLASSES, settings, gt_prob=crf["gt_prob"], yx_features=yx_features)
    return np.argmax(marginals, axis=0).astype(np.uint8)


def _work(image_id: str, ctx: Context, state: None) -> None:
    cfg = ctx.params["affinity"]
    image = load_image(voc_dirs(ctx.root)["images"] / f"{image_id}.jpg")
    classes, cams = load_cams(ctx.args.cams, image_id, ctx.labels[image_id], image.shape[:2])
    yx = not cfg["fix_crf_feature_order"]
    for name, alpha in (("la", cfg["low_alpha"]), ("ha", cfg["high_alpha"])):
        mask = alpha_label_map(image, classes, cams, alpha, cfg["crf"], yx_features=yx)
        save_mask(ctx.out / name / f"{image_id}.png", mask)


STAGE = PerImageStage(
    name="affinity_labels",
    params_keys=PARAMS_KEYS,
    outputs=("la/{}.png", "ha/{}.png"),
    splits=lambda args, params: ["train_aug"],
    inputs=lambda args, ids: {"cams": folder_inputs(Path(args.cams), [f"{i}.npz" for i in ids])},
    work=_work,
    pooled=True,
    describe=lambda params: f"alphas {params['affinity']['low_alpha']}/{params['affinity']['high_alpha']}",
)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_per_image(STAGE, args, params)
