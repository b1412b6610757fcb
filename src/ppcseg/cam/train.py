"""Stage `train-cam`: train the CAM network (SEAM or EPS, with or without PPC) on VOC train_aug.

Objectives (docs/faithfulness.md):

    seam + ppc   [cls + rvmin + ER + ECR](view 1, view 2) + cross-prototype + cross-pseudo-label + intra
    seam         the same SEAM terms with the same two views (view 2 = view 1 resized to cam.view2_size,
                 as PPC's code does; cam.view2_scale 0.3 gives the original SEAM's 0.3x rescale instead)
    eps + ppc    cls + rvmin + ER/ECR at feature resolution + 1/2 saliency(CAMs) + 1/2 saliency(PCM CAMs)
                 + the contrast terms (EPS layout, background last)
    eps          the EPS baseline, one view, cls + saliency loss, no PCM

Reproducibility: the global batch of step t, each sample's augmentation, the dropout masks and the PPC sampling are
pure functions of (seed, t), so a run killed at any point and restarted with the same command resumes from its last
state in --state-dir and ends bit-identical (on CPU) to an uninterrupted run, whatever the number of DataLoader
workers. With several processes (torchrun or srun) each rank takes batch_size / world_size samples of the same global
batch; the PPC terms are computed on the gathered global batch and gradients are averaged, so the update equals the
single-process update on the same batch (up to floating-point summation order).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ppcseg.cam.dataset import CamTrainSet
from ppcseg.data.voc import read_ids, voc_dirs
from ppcseg.models.cam_net import CamNet, build_cam_net, cam_net_meta
from ppcseg.utils.checkpoint import save_checkpoint
from ppcseg.utils.distributed import (
    DistInfo,
    all_gather_nograd,
    average_gradients,
    gather_with_grad,
    init_distributed,
    local_slice,
    mean_over_ranks,
    shutdown_distributed,
)
from ppcseg.utils.errors import InputError, refuse_non_finite_loss
from ppcseg.utils.optim import poly_lr, poly_sgd, set_lr
from ppcseg.utils.progress import progress
from ppcseg.utils.runtime import add_seed_argument
from ppcseg.utils.training import EXECUTION_ONLY, LossCurve, RunStates, input_fingerprints, weights_input

PARAMS_KEYS: tuple[str, ...] = ("cam",)
SPLIT = "train_aug"
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="ROOT", help="VOC2012 root (JPEGImages, ImageSets, ...)")
    parser.add_argument("--out", required=True, metavar="CKPT", help="final checkpoint of the CAM network")
    parser.add_argument("--out-loss", required=True, metavar="CSV", help="per-step loss terms (for dvc plots)")
    parser.add_argument("--state-dir", required=True, metavar="DIR", help="resumable training states")
    parser.add_argument("--weights", metavar="FILE", help="ImageNet backbone weights (needed if cam.pretrained)")
    parser.add_argument("--saliency", metavar="DIR", help="saliency maps <id>.png (cam.method = eps)")
    add_seed_argument(parser)


# ----------------------------------------------------------------------------------------------------------- data


def global_batch_keys(step: int, n_images: int, batch_size: int, seed: int) -> list[tuple[int, int]]:
    """(epoch, index) keys of step `step`: epochs are seeded permutations, the last partial batch dropped."""
    per_epoch = n_images // batch_size
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng((seed, epoch)).permutation(n_images)
    return [(epoch, int(i)) for i in order[position * batch_size : (position + 1) * batch_size]]


def step_seed(seed: int, step: int, stream: int) -> int:
    """A seed for one random stream of one step: 0 = shared by all ranks (PPC sampling), 1 + rank = dropout."""
    return int(np.random.SeedSequence((seed, step, stream)).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------------------- loss


def view2_size(cam: dict[str, Any], size1: tuple[int, int]) -> tuple[int, int]:
    """Size of view 2: the fixed cam.view2_size of PPC, or view 1 scaled by cam.view2_scale (original SEAM: 0.3)."""
    if cam["view2_scale"] is None:
        return (cam["view2_size"], cam["view2_size"])
    return (int(size1[0] * cam["view2_scale"]), int(size1[1] * cam["view2_scale"]))


def compute_losses(
    net: CamNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    cam: dict[str, Any],
    *,
    saliency: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """All loss terms of one step on this process's share of the batch; 'total' is what to back-propagate.

    With several processes, the contrast terms are computed on the gathered global batch (every rank gets the same
    value); everything else on the local share, whose mean over ranks is the global-batch value.
    """
    from ppcseg.losses.eps import saliency_loss
    from ppcseg.losses.ppc import pixel_prototype_contrast
    from ppcseg.losses.seam import classification_loss, seam_losses

    method, eps_cfg = cam["method"], cam["eps"]
    sal_kwargs = {"tau": eps_cfg["saliency_threshold"], "lam": eps_cfg["lambda_fg"]}
    out1 = net(images)
    if method == "eps" and not cam["ppc"]:  # EPS baseline: one view, no PCM
        cls = classification_loss(out1["cam"], labels, bg_channel=net.background_channel)
        sal = saliency_loss(out1["cam"], saliency, labels, **sal_kwargs)
        return {"total": cls + sal, "cls": cls, "sal": sal}

    size2 = view2_size(cam, images.shape[-2:])
    images2 = F.interpolate(images, size=size2, mode="bilinear", align_corners=True)
    out2 = net(images2)
    terms: dict[str, torch.Tensor] = {}
    if method == "seam":
        up = CamNet.upsample
        seam = seam_losses(
            up(out1["cam"], images.shape[-2:]),
            up(out1["cam_rv"], images.shape[-2:]),
            up(out2["cam"], size2),
            up(out2["cam_rv"], size2),
            labels,
            layout="seam",
        )
        total = seam["total"]
    else:
        seam = seam_losses(
            out1["cam"],
            out1["cam_rv"],
            out2["cam"],
            out2["cam_rv"],
            labels,
            layout="eps",
            fix_eps_max_onehot=bool(eps_cfg.get("fix_max_onehot", False)),
        )
        saliency2 = F.interpolate(saliency, size=size2, mode="bilinear", align_corners=True)
        sal_cam = (
            saliency_loss(out1["cam"], saliency, labels, **sal_kwargs)
            + saliency_loss(out2["cam"], saliency2, labels, **sal_kwargs)
        ) / 2
        sal_rv = (
            saliency_loss(out1["cam_rv"], saliency, labels, **sal_kwargs)
            + saliency_loss(out2["cam_rv"], saliency2, labels, **sal_kwargs)
        ) / 2
        terms["sal"] = sal_cam + sal_rv
        total = seam["total"] + terms["sal"]
    terms.update({k: seam[k] for k in ("cls", "rvmin", "er", "ecr")})

    if cam["ppc"]:
        switches = cam["ppc_loss"]
        contrast = pixel_prototype_contrast(
            gather_with_grad(out1["proj"]),
            gather_with_grad(out2["proj"]),
            all_gather_nograd(out1["cam_rv"].detach()),
            all_gather_nograd(out2["cam_rv"].detach()),
            all_gather_nograd(labels),
            variant=method,
            sampling=switches["sampling"],
            generator=generator,
            fix_background_prototype=switches["fix_background_prototype"],
            mask_prototypes_by_labels=switches["mask_prototypes_by_labels"],
            exclude_positive_from_negatives=switches["exclude_positive_from_negatives"],
        )
        terms.update({k: contrast[k] for k in ("cross_prototype", "cross_pseudo_label", "intra")})
        terms["ppc"] = contrast["total"]
        total = total + contrast["total"]
    return {"total": total, **terms}


def loss_columns(cam: dict[str, Any]) -> list[str]:
    if cam["method"] == "eps" and not cam["ppc"]:
        return ["cls", "sal"]
    cols = ["cls", "rvmin", "er", "ecr"] + (["sal"] if cam["method"] == "eps" else [])
    return cols + (["cross_prototype", "cross_pseudo_label", "intra", "ppc"] if cam["ppc"] else [])


# ------------------------------------------------------------------------------------------------------ optimiser


def make_optimizer(net: CamNet, cam: dict[str, Any]) -> torch.optim.SGD:
    groups = net.param_groups(cam["lr"], cam["weight_decay"])
    return poly_sgd(groups, cam["lr"], cam["weight_decay"], fix_momentum=cam["fix_sgd_momentum"])


def set_poly_lr(optimizer: torch.optim.Optimizer, cam: dict[str, Any], step: int, max_steps: int) -> float:
    """The poly lr of step `step` on every group; returns the base lr.

    The schedule is `cam.poly_steps` long, or the training length `max_steps` when that is 0 (the EPS + PPC run
    trains 20 000 steps on a 19 830-step schedule).
    """
    horizon = cam["poly_steps"] or max_steps
    return set_lr(optimizer, poly_lr(cam["lr"], step, horizon, cam["poly_power"]))


def total_steps(cam: dict[str, Any], n_images: int) -> int:
    if n_images < cam["batch_size"]:
        raise InputError(f"cam.batch_size: {cam['batch_size']} exceeds the {n_images} {SPLIT} images")
    return cam["max_steps"] or cam["epochs"] * (n_images // cam["batch_size"])


# ------------------------------------------------------------------------------------------------------ resume


def run_meta(cam: dict[str, Any], seed: int, max_steps: int, n_images: int) -> dict[str, Any]:
    return cam_net_meta(cam) | {"seed": seed, "max_steps": max_steps, "num_images": n_images}


def run_identity(meta: dict[str, Any]) -> dict[str, Any]:
    """What a state must share with this run to be resumed: the run meta without the execution-only settings."""
    return meta | {"cam_params": {k: v for k, v in meta["cam_params"].items() if k not in EXECUTION_ONLY}}


def run_inputs(root: Path, ids: list[str], saliency_dir: Path | None, weights: Path | None) -> dict[str, str | None]:
    """Names, sizes and mtimes of what training reads, so that a saved state is resumed only on the same inputs.

    A re-run on new data in the same folders (same paths, new contents) must start over, not resume or return the
    finished run of the old data.
    """
    dirs = voc_dirs(root)
    return input_fingerprints(
        images=([dirs["images"] / f"{image_id}.jpg" for image_id in ids] + [dirs["labels"]], root),
        saliency=None if saliency_dir is None else ([saliency_dir / f"{i}.png" for i in ids], saliency_dir),
        weights=weights_input(weights),
    )


# ----------------------------------------------------------------------------------------------------------- run


def train(
    root: str | Path,
    cam: dict[str, Any],
    seed: int,
    *,
    out: str | Path,
    loss_csv: str | Path,
    state_dir: str | Path,
    weights: str | Path | None = None,
    saliency_dir: str | Path | None = None,
    info: DistInfo | None = None,
    stop_after: int | None = None,
) -> None:
    """Train (or resume) and write the final checkpoint. `stop_after` ends early after that many steps (tests)."""
    info = info or DistInfo(0, 1, 0, torch.device("cpu"))
    if cam["method"] == "eps" and saliency_dir is None:
        raise InputError("cam.method is eps: the saliency maps folder (--saliency) is required")
    if cam["ppc"] and cam["view2_scale"] is not None:
        raise InputError("cam.view2_scale: PPC needs the fixed view-2 grid of cam.view2_size; set it to null")
    if cam["pretrained"] and weights is None:
        raise InputError("cam.pretrained is true: pass the ImageNet backbone weights with --weights")
    ids = read_ids(root, SPLIT)
    dataset = CamTrainSet(root, ids, cam, seed, saliency_dir if cam["method"] == "eps" else None)
    max_steps = total_steps(cam, len(ids))
    mine = local_slice(cam["batch_size"], info)
    meta = run_meta(cam, seed, max_steps, len(ids))
    meta["inputs"] = run_inputs(
        Path(root),
        ids,
        Path(saliency_dir) if cam["method"] == "eps" else None,
        Path(weights) if cam["pretrained"] else None,
    )

    torch.manual_seed(seed)  # head initialisation
    net = build_cam_net(cam, weights if cam["pretrained"] else None).to(info.device)
    net.train()
    optimizer = make_optimizer(net, cam)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # dropout and PPC sampling are reseeded every step, so the states need no RNG
    states = RunStates(state_dir, run_identity(meta), "train-cam", info.device, keep_rng=False)
    start, loss_rows = states.resume(net, optimizer, max_steps)
    curve = LossCurve(["step", "lr", "total", *loss_columns(cam)], loss_rows)

    end = max_steps if stop_after is None else min(max_steps, start + stop_after)
    schedule = [global_batch_keys(step, len(ids), cam["batch_size"], seed)[mine] for step in range(start, end)]
    loader = DataLoader(dataset, batch_sampler=schedule, num_workers=cam["num_workers"])
    log_every = max(1, (end - start) // 20)
    try:
        for step, batch in zip(range(start, end), progress(loader, total=end - start, desc="train-cam"), strict=True):
            lr = set_poly_lr(optimizer, cam, step, max_steps)
            torch.manual_seed(step_seed(seed, step, 1 + info.rank))  # dropout masks depend on (seed, step, rank) only
            generator = torch.Generator().manual_seed(step_seed(seed, step, 0))
            losses = compute_losses(
                net,
                batch["image"].to(info.device),
                batch["labels"].to(info.device),
                cam,
                saliency=batch["saliency"].to(info.device) if "saliency" in batch else None,
                generator=generator,
            )
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            average_gradients(params)
            optimizer.step()

            logged = mean_over_ranks({k: float(v.detach()) for k, v in losses.items()}, info.device)
            refuse_non_finite_loss(step + 1, logged, "total")  # every rank sees the same mean
            if info.is_main:
                curve.append(step + 1, lr, [logged[c] for c in curve.columns[2:]])  # row = update number
                if (step + 1) % log_every == 0:
                    log.info("step %d/%d lr %.3g loss %.4f", step + 1, max_steps, lr, logged["total"])
                if (step + 1) % cam["checkpoint_every"] == 0 or step + 1 == max_steps:
                    states.save(step + 1, net, optimizer, curve.rows)
    finally:  # also after a failed step: the curve shows the steps that led to it
        if info.is_main:
            curve.write(loss_csv)
    if info.is_main and end == max_steps:
        save_checkpoint(out, {"model": net.state_dict()}, meta)
        log.info("wrote %s after %d steps", out, max_steps)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    info = init_distributed()
    if info.is_main:
        log.info(
            "train-cam: %d process(es), global batch %d, device %s",
            info.world_size,
            params["cam"]["batch_size"],
            info.device,
        )
    try:
        train(
            args.data,
            params["cam"],
            args.seed,
            out=args.out,
            loss_csv=args.out_loss,
            state_dir=args.state_dir,
            weights=args.weights,
            saliency_dir=args.saliency,
            info=info,
        )
    finally:
        shutdown_distributed()
