"""Shared test data for the CAM-inference, seed and refinement tests: a small generated VOC folder, oracle CAMs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from ppcseg.data.cams import save_cams
from ppcseg.data.synthetic import make_synthetic_voc
from ppcseg.data.voc import load_mask, read_class_labels, read_ids, voc_dirs

REPO = Path(__file__).resolve().parents[2]


def default_params(**overrides: dict[str, Any]) -> dict[str, Any]:
    """params.yaml with some sections updated (no schema validation: the tests build params directly)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section] = {**params[section], **values}
        else:
            params[section] = values
    return params


def make_voc(root: Path, *, size: int = 48, train: int = 4, val: int = 2, extra: int = 2, seed: int = 0) -> Path:
    return make_synthetic_voc(
        root,
        seed=seed,
        image_size=size,
        num_train=train,
        num_val=val,
        num_train_aug_extra=extra,
        min_classes=1,
        max_classes=2,
    )


def oracle_cams(root: Path, out: Path, split: str = "train_aug", noise: float = 0.0, seed: int = 0) -> None:
    """CAMs from the SegmentationClassAug masks: 0.9 inside the class, 0.05 outside, plus uniform noise, clipped."""
    rng = np.random.default_rng(seed)
    labels = read_class_labels(root)
    for image_id in read_ids(root, split):
        gt = load_mask(voc_dirs(root)["masks_aug"] / f"{image_id}.png")
        classes = labels[image_id]
        cams = np.stack([np.where(gt == c, 0.9, 0.05) for c in classes]).astype(np.float32)
        cams += noise * rng.uniform(-1, 1, cams.shape)
        save_cams(out / f"{image_id}.npz", classes, np.clip(cams, 0, 1))


def args(**kwargs: Any) -> argparse.Namespace:
    return argparse.Namespace(threads=None, **kwargs)


class StubCamNet(nn.Module):
    """Follows the CamNet contract: stride-8 maps from the image's channel means with per-class weights."""

    def __init__(self, background_channel: int = 0, method: str = "seam") -> None:
        super().__init__()
        self.background_channel = background_channel
        self.meta = {"method": method}
        self.weight = nn.Parameter(torch.linspace(-1.0, 1.0, 21 * 3).view(21, 3, 1, 1))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        pooled = nn.functional.avg_pool2d(x, 8, 8, ceil_mode=True)
        cam = nn.functional.conv2d(pooled, self.weight)
        # A position-dependent term so that flips and resizes matter.
        ramp = torch.linspace(0, 1, cam.shape[-1]).view(1, 1, 1, -1)
        return {"cam": cam + ramp, "cam_rv": cam * 0.5 + ramp, "proj": pooled}


class Interrupted(Exception):
    """Stands for a kill of a per-image stage right before its final rename."""


def interrupted_run(monkeypatch: Any, module: Any, run_args: argparse.Namespace, params: dict[str, Any]) -> Path:
    """Run a per-image stage (`module.run`) but stop it before the rename: returns its `<out>.partial` folder."""

    def stop(*_: Any) -> None:
        raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(module, "finish_partial", stop)
        try:
            module.run(run_args, params)
        except Interrupted:
            pass
    out = Path(run_args.out)
    return out.with_name(out.name + ".partial")


def keep_only(partial: Path, names: list[str]) -> None:
    """Delete the outputs of a partial folder but `names` (relative paths): a kill between images."""
    for path in partial.rglob("*"):
        if path.is_file() and not path.name.startswith(".") and str(path.relative_to(partial)) not in names:
            path.unlink()
