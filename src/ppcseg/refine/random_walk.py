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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ppcseg.data.cams import channel_labels, load_cams, to_tensor
from ppcseg.data.voc import load_image, save_mask, voc_dirs
from ppcseg.refine.affinity_net import AffinityNet, load_affinity_net, sparse_affinity
from ppcseg.utils.per_image import (
    check_labels,
    fingerprint,
    finish_partial,
    folder_inputs,
    image_inputs,
    open_partial,
    pending,
    stage_ids,
    stage_outputs,
)
from ppcseg.utils.progress import progress
from ppcseg.utils.shards import add_shard_argument, parse_shard

PARAMS_KEYS: tuple[str, ...] = ("random_walk", "affinity.fix_pair_region", "cam.backbone")
STRIDE = 8
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (JPEGImages, ImageSets, cls_labels.json)")
    parser.add_argument("--cams", required=True, help="folder of <id>.npz CAM files written by infer-cam")
    parser.add_argument("--checkpoint", required=True, help="AffinityNet checkpoint written by train-affinity")
    parser.add_argument("--out", required=True, help="output folder of <id>.png pseudo-masks")
    add_shard_argument(parser)


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


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    cfg = params["random_walk"]
    root, cams_dir, checkpoint = Path(args.data), Path(args.cams), Path(args.checkpoint)
    shard = parse_shard(args.shard)
    ids = stage_ids("random_walk", root, params, shard)
    labels = check_labels(root, ids)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = load_affinity_net(args.checkpoint).to(device)
    backbone = net.meta.get("backbone")
    if backbone != params["cam"]["backbone"]:
        log.warning(
            "AffinityNet %s has backbone %s, params say cam.backbone %s",
            args.checkpoint,
            backbone,
            params["cam"]["backbone"],
        )
    identity = fingerprint(
        params,
        PARAMS_KEYS,
        {
            "data": image_inputs(root, ids),
            "cams": folder_inputs(cams_dir, [f"{i}.npz" for i in ids]),
            "checkpoint": folder_inputs(checkpoint.parent, [checkpoint.name]),
        },
        shard,
    )
    work = open_partial(args.out, identity)
    todo = pending(ids, work)
    log.info(
        "random-walk on %s: %d images, %d already done, beta %s, logt %s, bg %s, radius %s, %s pairs, device %s",
        cfg["split"],
        len(ids),
        len(ids) - len(todo),
        cfg["beta"],
        cfg["logt"],
        cfg["bg_score"],
        cfg["radius"],
        "all in-image" if params["affinity"]["fix_pair_region"] else "official",
        device,
    )
    start = time.monotonic()
    for image_id in progress(todo, desc="random-walk"):
        image = load_image(voc_dirs(root)["images"] / f"{image_id}.jpg")
        classes, cams = load_cams(cams_dir, image_id, labels[image_id], image.shape[:2])
        mask = random_walk_mask(
            net,
            image,
            classes,
            cams,
            beta=cfg["beta"],
            logt=cfg["logt"],
            bg_score=cfg["bg_score"],
            radius=cfg["radius"],
            all_pairs=params["affinity"]["fix_pair_region"],
            device=device,
        )
        save_mask(work / f"{image_id}.png", mask)
    if todo:
        elapsed = time.monotonic() - start
        log.info("random-walk: %d images in %.1f s (%.2f images/s)", len(todo), elapsed, len(todo) / elapsed)
    finish_partial(args.out, stage_outputs("random_walk", root, params, shard), identity, shard, "random_walk")
