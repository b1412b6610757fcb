"""random-walk: AffinityNet random walk of the CAMs into pseudo-masks (docs/faithfulness.md).

Per image: affinities on the official pair set, or on every in-image pair with `affinity.fix_pair_region`
(self-affinity 1, 0 elsewhere), raised to beta, column-normalised into a transition matrix T; the CAMs,
average-pooled 8x with a constant background score, are multiplied by T^(2^logt), upsampled bilinearly and argmaxed.
The official code squares a dense T logt times (O(n^3) per squaring); here the 2^logt products v <- v T run on the
sparse T, which is the same product (matrix powers associate) in O(2^logt * nnz).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ppcseg.data.cams import channel_labels, load_cams, to_tensor
from ppcseg.data.voc import load_image, save_mask, voc_dirs
from ppcseg.per_image import (
    Context,
    PerImageStage,
    add_per_image_arguments,
    file_input,
    folder_inputs,
    run_per_image,
)
from ppcseg.refine.affinity_net import AffinityNet, load_affinity_net, sparse_affinity

PARAMS_KEYS: tuple[str, ...] = ("random_walk", "affinity.fix_pair_region", "cam.backbone")
STRIDE = 8
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_per_image_arguments(parser, "output folder of <id>.png pseudo-masks")
    parser.add_argument("--cams", required=True, help="folder of <id>.npz CAM files written by infer-cam")
    parser.add_argument("--checkpoint", required=True, help="AffinityNet checkpoint written by train-affinity")


def walk(affinity: torch.Tensor, scores: torch.Tensor, logt: int) -> torch.Tensor:
    """scores (C, n) times T^(2^logt), T = affinity / column sums; `affinity` is a symmetric sparse (n, n) matrix."""
    column_sums = torch.sparse.sum(affinity, dim=0).to_dense()
    vt = scores.t().contiguous()
    for _ in range(2**logt):
        # (v T)^T = T^T v^T = (A v^T) / colsum, because A is symmetric.
        vt = torch.sparse.mm(affinity, vt) / column_sums[:, None]
    return vt.t()


def pooled_scores(cams: np.ndarray, bg_score: float, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """[background constant, CAMs] on the padded image (zeros in the padding), average-pooled to `size`: (K+1, h, w)."""
    height, width = cams.shape[1:]
    full = torch.zeros((cams.shape[0] + 1, *padded), dtype=torch.float32)
    full[0, :height, :width] = bg_score
    full[1:, :height, :width] = torch.from_numpy(cams)
    # Equals avg_pool2d(8, 8) when the features are at exactly 1/8 of the padded size.
    return F.adaptive_avg_pool2d(full[None], size)[0]


@torch.inference_mode()
def random_walk_mask(
    net: AffinityNet,
    image: np.ndarray,
    classes: np.ndarray,
    cams: np.ndarray,
    *,
    beta: float,
    logt: int,
    bg_score: float,
    radius: int,
    all_pairs: bool = False,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Pseudo-mask (H, W) uint8 in VOC indices; `all_pairs` as in `pair_indices`."""
    height, width = image.shape[:2]
    padded = (-(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE)
    x = F.pad(to_tensor(image), (0, padded[1] - width, 0, padded[0] - height))[None].to(device)
    features = net(x)
    fh, fw = features.shape[-2:]
    affinity, _ = sparse_affinity(features, radius, beta, all_pairs=all_pairs)
    scores = pooled_scores(cams, bg_score, padded, (fh, fw)).to(device)
    walked = walk(affinity, scores.reshape(scores.shape[0], -1), logt).reshape(1, -1, fh, fw)
    up = F.interpolate(walked, size=padded, mode="bilinear", align_corners=False)[0, :, :height, :width]
    lookup = channel_labels(classes).astype(np.uint8)
    return lookup[up.argmax(dim=0).cpu().numpy()]


def _init(ctx: Context) -> tuple[AffinityNet, torch.device]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = load_affinity_net(ctx.args.checkpoint).to(device)
    backbone = net.meta.get("backbone")
    if backbone != ctx.params["cam"]["backbone"]:
        log.warning(
            "AffinityNet %s has backbone %s, params say cam.backbone %s",
            ctx.args.checkpoint,
            backbone,
            ctx.params["cam"]["backbone"],
        )
    return net, device


def _work(image_id: str, ctx: Context, state: tuple[AffinityNet, torch.device]) -> None:
    net, device = state
    cfg = ctx.params["random_walk"]
    image = load_image(voc_dirs(ctx.root)["images"] / f"{image_id}.jpg")
    classes, cams = load_cams(ctx.args.cams, image_id, ctx.labels[image_id], image.shape[:2])
    mask = random_walk_mask(
        net,
        image,
        classes,
        cams,
        beta=cfg["beta"],
        logt=cfg["logt"],
        bg_score=cfg["bg_score"],
        radius=cfg["radius"],
        all_pairs=ctx.params["affinity"]["fix_pair_region"],
        device=device,
    )
    save_mask(ctx.out / f"{image_id}.png", mask)


def _describe(params: dict[str, Any]) -> str:
    cfg = params["random_walk"]
    pairs = "all in-image" if params["affinity"]["fix_pair_region"] else "official"
    return f"beta {cfg['beta']}, logt {cfg['logt']}, bg {cfg['bg_score']}, radius {cfg['radius']}, {pairs} pairs"


STAGE = PerImageStage(
    name="random_walk",
    params_keys=PARAMS_KEYS,
    outputs=("{}.png",),
    splits=lambda args, params: [params["random_walk"]["split"]],
    inputs=lambda args, ids: {
        "cams": folder_inputs(Path(args.cams), [f"{i}.npz" for i in ids]),
        "checkpoint": file_input(args.checkpoint),
    },
    work=_work,
    pooled=False,
    init=_init,
    describe=_describe,
)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_per_image(STAGE, args, params)
