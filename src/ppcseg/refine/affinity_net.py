"""AffinityNet (PSA): pixel affinities from backbone features at stride 8 (docs/faithfulness.md).

Features: ELU(1x1 conv4) ⊕ ELU(1x1 conv5) ⊕ ELU(1x1 conv6) -> ELU(1x1 fuse); for ResNet-38 the widths are 64, 128,
256 -> 448 (conv4/8, conv5/8, conv6/16 of its 512/1024/4096 channels; other backbones use the same ratios).
Affinity of a pixel pair: a_ij = exp(-mean_c |f_i - f_j|), for pairs within a radius (34 forward offsets for 5).
As in the official code, pairs start only from rows 0..h-1-f and columns f..w-1-f (f = radius - 1), and maps whose
shorter side is under 2 * radius + 1 use radius (side - 1) // 2; `all_pairs` takes every in-image pair instead.
The backbone's own train() keeps its BatchNorm frozen and early layers fixed, as the official ResNet-38 does.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ppcseg.utils.checkpoint import load_checkpoint, save_checkpoint

ARCH = "affinitynet"


def feature_dims(channels: dict[str, int]) -> tuple[int, int, int]:
    """Head widths for the conv4/conv5/conv6 taps: ResNet-38 (512, 1024, 4096) -> (64, 128, 256)."""
    return (max(8, channels["conv4"] // 8), max(8, channels["conv5"] // 8), max(8, channels["conv6"] // 16))


class AffinityNet(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        dims = feature_dims(backbone.channels)
        self.f8_3 = nn.Conv2d(backbone.channels["conv4"], dims[0], 1, bias=False)
        self.f8_4 = nn.Conv2d(backbone.channels["conv5"], dims[1], 1, bias=False)
        self.f8_5 = nn.Conv2d(backbone.channels["conv6"], dims[2], 1, bias=False)
        self.f9 = nn.Conv2d(sum(dims), sum(dims), 1, bias=False)
        for conv in (self.f8_3, self.f8_4, self.f8_5):
            nn.init.kaiming_normal_(conv.weight)
        # PSA's initialisation: a large gain keeps early affinities away from 1 everywhere.
        nn.init.xavier_uniform_(self.f9.weight, gain=4)

    def new_layers(self) -> list[nn.Module]:
        """Layers trained from scratch (10x learning rate)."""
        return [self.f8_3, self.f8_4, self.f8_5, self.f9, *self.backbone.new_layers()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Affinity features (N, D, h, w) at stride 8."""
        taps = self.backbone(x)
        fused = torch.cat(
            [F.elu(self.f8_3(taps["conv4"])), F.elu(self.f8_4(taps["conv5"])), F.elu(self.f8_5(taps["conv6"]))], dim=1
        )
        return F.elu(self.f9(fused))


def pair_offsets(radius: int) -> list[tuple[int, int]]:
    """Forward half-disc offsets (dy, dx) with dy^2 + dx^2 < radius^2: (0, 1..r-1), then dy >= 1 rows."""
    offsets = [(0, dx) for dx in range(1, radius)]
    for dy in range(1, radius):
        offsets += [(dy, dx) for dx in range(-radius + 1, radius) if dx * dx + dy * dy < radius * radius]
    return offsets


def official_radius(radius: int, height: int, width: int) -> int:
    """The radius the official AffinityNet uses on an h x w map: (shorter side - 1) // 2 when that side is under
    2 * radius + 1 (its start-pixel region would otherwise be empty), else `radius`."""
    side = min(height, width)
    return (side - 1) // 2 if side < 2 * radius + 1 else radius


@lru_cache(maxsize=32)
def _pairs(radius: int, height: int, width: int, all_pairs: bool) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(height * width).reshape(height, width)
    if not all_pairs:
        radius = official_radius(radius, height, width)
    border = radius - 1
    src, dst = [], []
    for dy, dx in pair_offsets(radius):
        if all_pairs:
            y0, y1 = 0, height - dy
            x0, x1 = max(0, -dx), min(width, width - dx)
        else:
            # One start region for every offset: its targets stay inside the image for any |dx|, dy <= border.
            y0, y1 = 0, height - border
            x0, x1 = border, width - border
        if y1 <= y0 or x1 <= x0:
            continue
        src.append(grid[y0:y1, x0:x1].reshape(-1))
        dst.append(grid[y0 + dy : y1 + dy, x0 + dx : x1 + dx].reshape(-1))
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(src) if src else empty), (np.concatenate(dst) if dst else empty)


def pair_indices(radius: int, height: int, width: int, *, all_pairs: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat (from, to) pixel indices of the pairs within the radius, each unordered pair once, grouped by offset.

    Default: the official pair set (see the module docstring); `all_pairs`: every in-image pair.
    """
    src, dst = _pairs(radius, height, width, all_pairs)
    return torch.from_numpy(src), torch.from_numpy(dst)


def pair_affinity(features: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """a_ij = exp(-mean_c |f_i - f_j|) for the given pairs: (N, P) from features (N, D, h, w)."""
    flat = features.flatten(2)
    src, dst = src.to(flat.device), dst.to(flat.device)
    return torch.exp(-(flat[:, :, src] - flat[:, :, dst]).abs().mean(dim=1))


def sparse_affinity(
    features: torch.Tensor, radius: int, beta: float, *, all_pairs: bool = False
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Symmetric affinity matrix of one image (h*w, h*w), sparse COO: a_ij^beta on the pairs of `pair_indices`, 1 on
    the diagonal, 0 elsewhere. `features` is (1, D, h, w)."""
    _, _, height, width = features.shape
    n = height * width
    src, dst = pair_indices(radius, height, width, all_pairs=all_pairs)
    aff = pair_affinity(features, src, dst)[0].pow(beta)
    diag = torch.arange(n)
    rows = torch.cat([src, dst, diag]).to(features.device)
    cols = torch.cat([dst, src, diag]).to(features.device)
    values = torch.cat([aff, aff, torch.ones(n, device=features.device, dtype=aff.dtype)])
    matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False).coalesce()
    return matrix, (height, width)


def build_affinity_net(backbone_name: str, weights: str | Path | None = None) -> AffinityNet:
    from ppcseg.models.backbones import build_backbone

    return AffinityNet(build_backbone(backbone_name, str(weights) if weights else None))


def save_affinity_net(path: str | Path, net: AffinityNet, meta: dict[str, Any]) -> None:
    save_checkpoint(path, {"model": net.state_dict()}, {"arch": ARCH, **meta})


def load_affinity_net(path: str | Path) -> AffinityNet:
    """An AffinityNet from a train-affinity checkpoint, in eval mode."""
    ckpt = load_checkpoint(path, expect={"arch": ARCH})
    net = build_affinity_net(ckpt["meta"]["backbone"])
    net.load_state_dict(ckpt["model"])
    net.meta = ckpt["meta"]
    return net.eval()
