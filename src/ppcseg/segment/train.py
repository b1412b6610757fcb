"""Stage `train-seg`: train the final segmentation network on the pseudo-masks with mmengine's Runner.

    ppcseg train-seg --params params.yaml --data ROOT --masks DIR --work-dir DIR --out CKPT [--weights FILE]

params.yaml `segmentation` picks the mmseg config (segment/configs/) and overrides iterations, learning rate, global
batch size and crop size. The global batch is kept whatever the number of processes, which torchrun or srun give through
the environment as for train-cam (per-process batch = batch // world size). A run killed part-way resumes from the last checkpoint in --work-dir; the final weights are copied
atomically to --out as a tensors-only checkpoint that `eval-seg` and `export-predictions` load with weights_only=True.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config

from ppcseg.data.voc import read_ids, voc_dirs
from ppcseg.segment.checkpoint import config_backbone, export_checkpoint, load_config
from ppcseg.segment.compat import trust_checkpoints_under
from ppcseg.utils.distributed import init_distributed
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import write_json
from ppcseg.utils.runtime import add_seed_argument
from ppcseg.utils.training import input_fingerprints, same_run, weights_input

PARAMS_KEYS: tuple[str, ...] = ("segmentation",)
TRAIN_SPLIT = "train_aug"
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC root (JPEGImages, ImageSets/Segmentation, ...)")
    parser.add_argument("--masks", required=True, help="pseudo-mask folder: <id>.png for every train_aug image")
    parser.add_argument("--work-dir", required=True, help="mmengine work folder (logs, resumable checkpoints)")
    parser.add_argument("--out", required=True, help="final tensors-only checkpoint")
    parser.add_argument("--weights", default=None, help="local ImageNet weights of the backbone (never downloaded)")
    add_seed_argument(parser)


def _set_crop(pipeline: list[dict], crop: tuple[int, int]) -> None:
    for step in pipeline:
        if step["type"] == "RandomCrop":
            step["crop_size"] = crop


def build_train_config(
    seg: dict[str, Any],
    seed: int,
    *,
    data: str | Path,
    masks: str | Path,
    work_dir: str | Path,
    weights: str | Path | None = None,
    processes: int = 1,
) -> Config:
    """The mmseg config named by `seg['config']` with the params.yaml overrides and this run's paths applied."""
    cfg = load_config(seg["config"])
    if (built := config_backbone(cfg)) != seg["backbone"]:
        # the rule picks the pretrained weights by segmentation.backbone: they must fit the network the config builds
        raise InputError(f"segmentation.backbone: '{seg['backbone']}', but {seg['config']} builds a {built} backbone")
    iters, crop = int(seg["iters"]), (int(seg["crop_size"]),) * 2
    if seg["batch_size"] % processes:
        raise InputError(f"segmentation.batch_size: {seg['batch_size']} is not divisible by {processes} processes")

    cfg.work_dir = str(work_dir)
    # The process group is already joined (init_distributed); "pytorch" only tells mmengine to wrap the model in DDP.
    cfg.launcher = "pytorch" if processes > 1 else "none"
    if processes > 1 and not torch.cuda.is_available():
        # DDP of CPU processes (train() joins the gloo group): no device_ids, which mmengine sets to the local GPU.
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    cfg.resume = True  # picks up <work-dir>/last_checkpoint when present, starts fresh otherwise
    cfg.randomness = dict(seed=int(seed), deterministic=False)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for scheduler in cfg.param_scheduler:
        scheduler.end = iters
    checkpoint_hook = cfg.default_hooks.checkpoint
    checkpoint_hook.interval = min(checkpoint_hook.interval, iters)
    cfg.optim_wrapper.optimizer.lr = float(seg["lr"])
    cfg.model.data_preprocessor.size = crop
    cfg.crop_size = crop

    train_loader = cfg.train_dataloader
    train_loader.batch_size = seg["batch_size"] // processes
    train_loader.dataset.data_root = str(data)
    train_loader.dataset.mask_dir = str(Path(masks).resolve())
    _set_crop(train_loader.dataset.pipeline, crop)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = str(data)
        loader.dataset.split = seg["val_split"]

    if weights is not None:
        if not Path(weights).is_file():
            raise InputError(f"{weights}: backbone weights file not found")
        backbone = cfg.model.backbone
        if backbone.type == "PPCBackbone":
            backbone.weights = str(weights)
        else:
            backbone.init_cfg = dict(type="Pretrained", checkpoint=str(weights))
    return cfg


def reset_if_stale(work_dir: str | Path, fingerprint: dict[str, Any]) -> None:
    """Drop the resumable checkpoints of `work_dir` when they came from other settings (params, data, weights).

    Resuming after a kill must continue the same run; after a params change the run starts over.
    """
    work_dir = Path(work_dir)
    marker = work_dir / "ppcseg_run.json"
    if marker.is_file() and not same_run(json.loads(marker.read_text()), fingerprint):
        stale = [*work_dir.glob("iter_*.pth"), work_dir / "last_checkpoint"]
        log.warning("train-seg: %s holds checkpoints of other settings; starting over", work_dir)
        for path in stale:
            path.unlink(missing_ok=True)
    write_json(marker, fingerprint)


def point_last_checkpoint_here(work_dir: str | Path) -> None:
    """Make mmengine's `last_checkpoint` name its file inside `work_dir`.

    mmengine writes the absolute path there: after the project folder moved, it would name a file that is gone (or
    the old copy's), and the resume would fail instead of continuing from the same checkpoint here.
    """
    marker = Path(work_dir) / "last_checkpoint"
    if marker.is_file():
        here = Path(work_dir).resolve() / Path(marker.read_text().strip()).name
        if here.is_file():
            marker.write_text(str(here))


def train(cfg: Config, out: str | Path, config_name: str) -> None:
    """Run (or resume) mmengine's Runner on `cfg` and export the final weights to `out` (rank 0)."""
    from mmengine.dist import get_rank
    from mmengine.runner import Runner, find_latest_checkpoint

    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    trust_checkpoints_under(work_dir)
    Runner.from_cfg(cfg).train()
    if get_rank() == 0:
        last = find_latest_checkpoint(str(work_dir))
        if last is None:
            raise InputError(f"{work_dir}: training finished without a checkpoint")
        export_checkpoint(last, out, cfg, config_name)
        log.info("train-seg: wrote %s", out)


def pseudo_mask_paths(data: str | Path, masks: str | Path) -> list[Path]:
    """<masks>/<id>.png of every train_aug image; InputError naming the first one missing."""
    paths = [Path(masks) / f"{image_id}.png" for image_id in read_ids(data, TRAIN_SPLIT)]
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise InputError(f"{missing}: listed in split '{TRAIN_SPLIT}' but missing")
    return paths


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    seg = params["segmentation"]
    if not Path(args.masks).is_dir():
        raise InputError(f"{args.masks}: pseudo-mask folder not found")
    # The launch (torchrun or srun) is read from the environment, as train-cam does; mmengine then skips its own
    # launcher, which would set a CUDA device on CPU nodes.
    info = init_distributed()
    cfg = build_train_config(
        seg,
        args.seed,
        data=args.data,
        masks=args.masks,
        work_dir=args.work_dir,
        weights=args.weights,
        processes=info.world_size,
    )
    masks_files = pseudo_mask_paths(args.data, args.masks)
    if seg["batch_size"] > len(masks_files):
        # mmseg's infinite sampler would repeat images within one batch, with as many loader slots as the batch
        raise InputError(
            f"segmentation.batch_size: {seg['batch_size']} is larger than {TRAIN_SPLIT} ({len(masks_files)} images)"
        )
    images = [voc_dirs(args.data)["images"] / f"{image_id}.jpg" for image_id in read_ids(args.data, TRAIN_SPLIT)]
    fingerprint = {
        "seed": args.seed,
        "segmentation": {k: v for k, v in seg.items() if k != "test"},  # test settings do not affect training
        # what training reads, named relative to each folder (a moved project resumes, as the other stages do); the
        # masks' contents too: after an upstream change the same folder holds new masks, and resuming the finished
        # run of the old masks would silently return the old model
        "inputs": input_fingerprints(
            images=(images, Path(args.data)),
            masks=(masks_files, Path(args.masks)),
            weights=weights_input(args.weights),
        ),
    }
    if info.is_main:  # before the Runner starts: the other ranks wait in its setup
        reset_if_stale(args.work_dir, fingerprint)
        point_last_checkpoint_here(args.work_dir)
    if args.weights is None and cfg.model.backbone.get("arch") != "tiny":
        log.warning("train-seg: no --weights given, the backbone starts from random initialisation")
    log.info("train-seg: %s, %d iterations, global batch %d", seg["config"], seg["iters"], seg["batch_size"])
    train(cfg, args.out, seg["config"])
