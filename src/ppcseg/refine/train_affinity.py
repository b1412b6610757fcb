"""train-affinity: AffinityNet on the la/ha CRF maps of train_aug (docs/faithfulness.md).

Labels (per crop): start from la; where la says background -> 255 (uncertain); where ha says background -> 0;
padding (black pixels, as the official crop pads) -> 255. The one-hot la and ha maps are average-pooled 8x and
argmaxed separately before that combination (the official code pools the CRF marginals instead; the saved maps are
argmax PNGs). The crop's pairs within `affinity.radius` (the official set, or every in-image pair with
`affinity.fix_pair_region`, as in the random walk) give bg-positive (both 0), fg-positive (same class > 0) and
negative (different) sets; loss = 1/4 bg + 1/4 fg + 1/2 neg with -log(a + 1e-5) for positives and
-log(1 + 1e-5 - a) for negatives. Poly SGD (new layers 10x) with the official momentum quirk unless
cam.fix_sgd_momentum. Checkpoints every affinity.checkpoint_every steps; a restart resumes exactly (data order and
augmentation are functions of seed, epoch and index; the torch RNG states are saved for dropout).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ppcseg.data.cams import to_tensor
from ppcseg.data.voc import NUM_CLASSES, load_image, load_mask, read_ids, voc_dirs
from ppcseg.refine.affinity_net import AffinityNet, build_affinity_net, pair_affinity, pair_indices, save_affinity_net
from ppcseg.utils.errors import InputError, refuse_non_finite_loss
from ppcseg.utils.optim import poly_lr, poly_param_groups, poly_sgd, set_lr
from ppcseg.utils.progress import progress
from ppcseg.utils.runtime import add_seed_argument
from ppcseg.utils.training import EXECUTION_ONLY, LossCurve, RunStates, input_fingerprints, weights_input

PARAMS_KEYS: tuple[str, ...] = ("cam.backbone", "cam.fix_sgd_momentum", "affinity")
SPLIT = "train_aug"
STRIDE = 8
POLY_POWER = 0.9
JITTER = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}
LOSS_COLUMNS = ["step", "lr", "loss", "bg_loss", "fg_loss", "neg_loss"]
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (JPEGImages, ImageSets)")
    parser.add_argument("--labels", required=True, help="affinity-labels output (la/<id>.png, ha/<id>.png)")
    parser.add_argument("--out", required=True, help="final AffinityNet checkpoint")
    parser.add_argument("--out-loss", required=True, help="training loss per step (CSV)")
    parser.add_argument("--state-dir", required=True, help="folder for resumable training state")
    parser.add_argument("--weights", default=None, help="ImageNet weights of the backbone (omit: random init)")
    add_seed_argument(parser)


def color_jitter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """torchvision ColorJitter(0.3, 0.3, 0.3, 0.1) with factors and order drawn from `rng` (reproducible)."""
    ops = [
        (TF.adjust_brightness, rng.uniform(1 - JITTER["brightness"], 1 + JITTER["brightness"])),
        (TF.adjust_contrast, rng.uniform(1 - JITTER["contrast"], 1 + JITTER["contrast"])),
        (TF.adjust_saturation, rng.uniform(1 - JITTER["saturation"], 1 + JITTER["saturation"])),
        (TF.adjust_hue, rng.uniform(-JITTER["hue"], JITTER["hue"])),
    ]
    for index in rng.permutation(len(ops)):
        op, factor = ops[index]
        image = op(image, float(factor))
    return image


def _crop_window(size: int, crop: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """(source start, target start, length) of a random crop along one axis, padding when the image is smaller."""
    if size >= crop:
        return int(rng.integers(0, size - crop + 1)), 0, crop
    return 0, int(rng.integers(0, crop - size + 1)), size


def pool_labels(label: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average-pool the one-hot map 8x and argmax: (h/8, w/8) labels and a mask of blocks with any valid pixel."""
    onehot = F.one_hot(torch.from_numpy(label.astype(np.int64)), NUM_CLASSES).permute(2, 0, 1).float()
    onehot *= torch.from_numpy(valid)[None].float()
    pooled = F.avg_pool2d(onehot[None], STRIDE, STRIDE)[0]
    return pooled.argmax(dim=0).numpy(), pooled.amax(dim=0).numpy() >= 1e-5


def affinity_target(la: np.ndarray, ha: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Stride-8 label map (uint8): la classes, la-background 255, ha-background 0, padding 255."""
    la8, scored = pool_labels(la, valid)
    ha8, _ = pool_labels(ha, valid)
    target = la8.astype(np.uint8)
    target[la8 == 0] = 255
    target[ha8 == 0] = 0
    target[~scored] = 255
    return target


class AffinityDataset(Dataset):
    """Augmented crops and stride-8 affinity targets; sample `index` of epoch `epoch` depends only on them and seed."""

    def __init__(self, root: Path, labels_dir: Path, ids: list[str], crop: int, seed: int) -> None:
        self.root, self.labels_dir, self.ids, self.crop, self.seed = root, labels_dir, ids, crop, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_id = self.ids[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = load_image(voc_dirs(self.root)["images"] / f"{image_id}.jpg")
        la = load_mask(self.labels_dir / "la" / f"{image_id}.png", expected_shape=image.shape[:2])
        ha = load_mask(self.labels_dir / "ha" / f"{image_id}.png", expected_shape=image.shape[:2])
        if np.any(la == 255) or np.any(ha == 255):
            raise InputError(f"{self.labels_dir}: la/ha maps of '{image_id}' must label every pixel (found 255)")
        if rng.random() < 0.5:
            image, la, ha = image[:, ::-1], la[:, ::-1], ha[:, ::-1]
        image = np.asarray(color_jitter(Image.fromarray(np.ascontiguousarray(image)), rng))
        crop = self.crop
        (ys, yd, yn), (xs, xd, xn) = (_crop_window(image.shape[0], crop, rng), _crop_window(image.shape[1], crop, rng))
        # The official crop pads the raw image with black before normalising (not with the mean colour).
        x = to_tensor(np.zeros((crop, crop, 3), dtype=np.uint8))
        x[:, yd : yd + yn, xd : xd + xn] = to_tensor(image[ys : ys + yn, xs : xs + xn])
        la_c = np.zeros((crop, crop), dtype=np.uint8)
        ha_c = np.zeros((crop, crop), dtype=np.uint8)
        valid = np.zeros((crop, crop), dtype=bool)
        la_c[yd : yd + yn, xd : xd + xn] = la[ys : ys + yn, xs : xs + xn]
        ha_c[yd : yd + yn, xd : xd + xn] = ha[ys : ys + yn, xs : xs + xn]
        valid[yd : yd + yn, xd : xd + xn] = True
        return x, torch.from_numpy(affinity_target(la_c, ha_c, valid))


def pair_labels(target: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """bg-positive, fg-positive and negative pair masks (N, P) float from stride-8 targets (N, h, w)."""
    flat = target.flatten(1).long()
    a, b = flat[:, src], flat[:, dst]
    valid = (a != 255) & (b != 255)
    bg = valid & (a == 0) & (b == 0)
    fg = valid & (a == b) & (a != 0)
    neg = valid & (a != b)
    return bg.float(), fg.float(), neg.float()


def affinity_loss(aff: torch.Tensor, bg: torch.Tensor, fg: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each term is a mean over its pairs in the batch (0 for an empty set)."""
    bg_loss = (-bg * torch.log(aff + 1e-5)).sum() / (bg.sum() + 1e-5)
    fg_loss = (-fg * torch.log(aff + 1e-5)).sum() / (fg.sum() + 1e-5)
    neg_loss = (-neg * torch.log(1.0 + 1e-5 - aff)).sum() / (neg.sum() + 1e-5)
    loss = bg_loss / 4 + fg_loss / 4 + neg_loss / 2
    return {"loss": loss, "bg_loss": bg_loss, "fg_loss": fg_loss, "neg_loss": neg_loss}


def param_groups(net: AffinityNet, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """PSA's PolyOptimizer groups: backbone weights 1x, backbone biases 2x (no decay), new-layer weights 10x, new-layer
    biases 20x (no decay). Only conv and GroupNorm parameters that train; BatchNorm is never optimised."""
    return poly_param_groups(net, list(net.new_layers()), lr, weight_decay)


@dataclass
class AffinityRun:
    """One training run as `build` makes it, before any state is resumed."""

    cfg: dict[str, Any]
    cam: dict[str, Any]
    seed: int
    net: AffinityNet
    optimizer: torch.optim.SGD
    dataset: AffinityDataset
    src: torch.Tensor
    dst: torch.Tensor
    steps_per_epoch: int
    max_steps: int
    device: torch.device
    states: RunStates


def build(args: argparse.Namespace, params: dict[str, Any]) -> AffinityRun:
    """Check the inputs; make the network (seeded), optimiser, dataset, pairs and the run's state folder."""
    cfg, cam = params["affinity"], params["cam"]
    seed = args.seed
    root, labels_dir = Path(args.data), Path(args.labels)
    ids = read_ids(root, SPLIT)
    missing = [i for i in ids if not all((labels_dir / d / f"{i}.png").is_file() for d in ("la", "ha"))]
    if missing:
        raise InputError(f"{labels_dir}: no la/ha affinity labels for {len(missing)} image(s), e.g. {missing[:3]}")
    batch = cfg["batch_size"]
    steps_per_epoch = len(ids) // batch
    if steps_per_epoch == 0:
        raise InputError(f"affinity.batch_size: {batch} is larger than {SPLIT} ({len(ids)} images)")
    max_steps = steps_per_epoch * cfg["epochs"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    torch.manual_seed(seed)
    net = build_affinity_net(cam["backbone"], args.weights).to(device).train()
    groups = param_groups(net, cfg["lr"], cfg["weight_decay"])
    optimizer = poly_sgd(groups, cfg["lr"], cfg["weight_decay"], fix_momentum=cam["fix_sgd_momentum"])
    identity = {
        "seed": seed,
        "backbone": cam["backbone"],
        "affinity": {k: v for k, v in cfg.items() if k not in EXECUTION_ONLY},
        "fix_sgd_momentum": cam["fix_sgd_momentum"],
        # a resumed run must train on the same images, la/ha maps and weights
        "inputs": input_fingerprints(
            images=([voc_dirs(root)["images"] / f"{i}.jpg" for i in ids], root),
            labels=([labels_dir / s / f"{i}.png" for i in ids for s in ("la", "ha")], labels_dir),
            weights=weights_input(args.weights),
        ),
    }
    # dropout draws from the global generator: the states keep it
    states = RunStates(args.state_dir, identity, "train-affinity", device, keep_rng=True)

    feat = cfg["crop_size"] // STRIDE
    src, dst = pair_indices(cfg["radius"], feat, feat, all_pairs=cfg["fix_pair_region"])
    log.info(
        "train-affinity: %d images, %d steps (batch %d, %d epochs), crop %d, %d pairs per crop, device %s",
        len(ids),
        max_steps,
        batch,
        cfg["epochs"],
        cfg["crop_size"],
        src.numel(),
        device,
    )
    dataset = AffinityDataset(root, labels_dir, ids, cfg["crop_size"], seed)
    return AffinityRun(
        cfg,
        cam,
        seed,
        net,
        optimizer,
        dataset,
        src.to(device),
        dst.to(device),
        steps_per_epoch,
        max_steps,
        device,
        states,
    )


def resume(job: AffinityRun) -> tuple[int, LossCurve]:
    """Steps done and the loss curve so far: from the run's latest state (network, optimiser, RNG), or from scratch."""
    start, rows = job.states.resume(job.net, job.optimizer, job.max_steps)
    return start, LossCurve(LOSS_COLUMNS, rows)


def train_loop(job: AffinityRun, start: int, curve: LossCurve, loss_csv: str | Path) -> None:
    """Train from step `start` to the end, saving a state every affinity.checkpoint_every steps; writes the loss curve."""
    cfg, seed, net, optimizer, device = job.cfg, job.seed, job.net, job.optimizer, job.device
    batch, n_images, feat = cfg["batch_size"], len(job.dataset), cfg["crop_size"] // STRIDE
    step, losses = start, None
    bar = iter(progress(range(step, job.max_steps), desc="train-affinity"))
    try:
        while step < job.max_steps:
            epoch, offset = divmod(step, job.steps_per_epoch)
            job.dataset.epoch = epoch
            order = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()
            batches = [order[i * batch : (i + 1) * batch] for i in range(offset, job.steps_per_epoch)]
            # Its own generator: the DataLoader's base-seed draw must not move the global RNG that dropout uses.
            loader = DataLoader(
                job.dataset,
                batch_sampler=batches,
                num_workers=cfg["num_workers"],
                generator=torch.Generator().manual_seed(seed + epoch),
            )
            for images, targets in loader:
                features = net(images.to(device))
                if features.shape[-2:] != (feat, feat):
                    raise InputError(
                        f"cam.backbone {job.cam['backbone']}: features {tuple(features.shape[-2:])} for a crop of "
                        f"{cfg['crop_size']}, expected {(feat, feat)} (stride 8)"
                    )
                lr = set_lr(optimizer, poly_lr(cfg["lr"], step, job.max_steps, POLY_POWER))
                losses = affinity_loss(
                    pair_affinity(features, job.src, job.dst), *pair_labels(targets.to(device), job.src, job.dst)
                )
                refuse_non_finite_loss(step + 1, {k: float(v) for k, v in losses.items()}, "loss")
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                optimizer.step()
                step += 1
                curve.append(step, lr, [losses[k].item() for k in LOSS_COLUMNS[2:]])
                next(bar, None)
                if step % cfg["checkpoint_every"] == 0 and step < job.max_steps:
                    job.states.save(step, net, optimizer, curve.rows)
    finally:  # also after a failed step: the curve shows the steps that led to it
        curve.write(loss_csv)
    for _ in bar:  # let the progress log finish
        pass
    if losses is not None:
        log.info(
            "train-affinity: final loss %.4f (bg %.4f, fg %.4f, neg %.4f)",
            *(losses[k].item() for k in LOSS_COLUMNS[2:]),
        )


def save(job: AffinityRun, out: str | Path) -> None:
    meta = {"backbone": job.cam["backbone"], "radius": job.cfg["radius"], "steps": job.max_steps, "seed": job.seed}
    save_affinity_net(out, job.net, meta)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    job = build(args, params)
    start, curve = resume(job)
    train_loop(job, start, curve, args.out_loss)
    save(job, args.out)
