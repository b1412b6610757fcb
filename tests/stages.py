"""Helpers for tests that call stages in process: params, their argparse namespace, a stub CAM network, a run killed
before its final rename."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ppcseg import per_image
from ppcseg.config import REPO_ROOT, load_params


def default_params(**overrides: dict[str, Any]) -> dict[str, Any]:
    """params.yaml with some sections updated (no schema validation: the tests build params directly)."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section] = {**params[section], **values}
        else:
            params[section] = values
    return params


def tiny_cam_params(**overrides: Any) -> dict[str, Any]:
    """The `cam` section of params.yaml with tiny, fast settings."""
    cam = copy.deepcopy(load_params([REPO_ROOT / "params.yaml"])["cam"])
    cam.update(
        backbone="tiny",
        pretrained=False,
        crop_size=48,
        view2_size=32,
        resize_long=[48, 72],
        batch_size=4,
        max_steps=12,
        num_workers=0,
        checkpoint_every=4,
        lr=0.05,
    )
    cam.update(overrides)
    return cam


def args(**kwargs: Any) -> argparse.Namespace:
    """A stage's parsed flags: the common ones at their CLI defaults (one shard, the run seed 0), then `kwargs`."""
    return argparse.Namespace(**{"threads": None, "shard": None, "seed": 0, **kwargs})


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
        patch.setattr(per_image, "finish_partial", stop)
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
