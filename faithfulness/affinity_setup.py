"""Shared by compare_affinity.py and compare_random_walk.py: the official AffinityNet (wseg network/resnet38_aff.py,
imported unchanged) and `ppcseg`'s, both on the same fixed backbone outputs and the same head weights.

The official `Net` derives from `wSEAM.network.resnet38d.Net`, a package that was never published; it is given a
stand-in base class whose `forward_as_dict` hands back the backbone outputs set for the current image (conv4, conv5,
conv6 at stride 8, derived from the image's colours by fixed random projections), and `wSEAM.tool.pyutils` is the
checkout's `tool/pyutils.py`. `ppcseg`'s AffinityNet gets a backbone that hands back the same outputs. The official
head is built at its own initialisation and its weights are loaded into `ppcseg`'s (same parameter names). ResNet-38
itself is not run (its outputs do not matter to what is compared: the head, the pairs, the affinities and the walk).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from common import load_file
from torch import nn

from ppcseg.refine.affinity_net import AffinityNet

CHANNELS = {"conv4": 512, "conv5": 1024, "conv6": 4096}
STRIDE = 8


class FixedTaps:
    """The backbone outputs of the current image, read by both networks."""

    value: dict[str, torch.Tensor] = {}

    @classmethod
    def set_for(cls, x: torch.Tensor, seed: int = 0) -> None:
        """Outputs for the (1, 3, H, W) input x: its 8x average-pooled colours through a fixed random projection per
        tap, plus a little fixed noise, through ReLU (regions of one colour get similar features)."""
        gen = torch.Generator().manual_seed(seed)
        pooled = F.avg_pool2d(x, STRIDE, STRIDE)
        out = {}
        for name, c in CHANNELS.items():
            w = torch.randn(c, 3, generator=gen) * 0.05
            b = torch.randn(c, 1, 1, generator=gen) * 0.02
            noise = torch.randn(1, c, *pooled.shape[-2:], generator=gen) * 0.005
            out[name] = torch.relu(torch.einsum("kc,nchw->nkhw", w, pooled) + b + noise)
        cls.value = out

    @classmethod
    def check(cls, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = tuple(cls.value["conv4"].shape[-2:])
        if size != (x.shape[-2] // STRIDE, x.shape[-1] // STRIDE):
            raise ValueError(f"backbone outputs of {size} set, input {tuple(x.shape)}")
        return dict(cls.value)


class StandInResNet38(nn.Module):
    """Stands in for wSEAM.network.resnet38d.Net: the attributes the official AffinityNet reads, fixed outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1a = self.b2 = self.b2_1 = self.b2_2 = nn.Identity()

    def forward_as_dict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return FixedTaps.check(x)


class FixedBackbone(nn.Module):
    """`ppcseg` backbone interface (channels, new_layers, taps dict) with the same fixed outputs."""

    channels = CHANNELS

    def new_layers(self) -> list[nn.Module]:
        return []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return FixedTaps.check(x)


def official_affinity_module(root: Path) -> types.ModuleType:
    """wseg network/resnet38_aff.py, imported with the stand-in base class and the checkout's tool/pyutils.py."""
    pyutils = load_file(root / "tool" / "pyutils.py", "official_wseg_pyutils")
    resnet38d = types.ModuleType("wSEAM.network.resnet38d")
    resnet38d.Net = StandInResNet38
    package, network, tool = (types.ModuleType(n) for n in ("wSEAM", "wSEAM.network", "wSEAM.tool"))
    package.network, package.tool, network.resnet38d, tool.pyutils = network, tool, resnet38d, pyutils
    sys.modules.update(
        {
            "wSEAM": package,
            "wSEAM.network": network,
            "wSEAM.network.resnet38d": resnet38d,
            "wSEAM.tool": tool,
            "wSEAM.tool.pyutils": pyutils,
        }
    )
    return load_file(root / "network" / "resnet38_aff.py", "official_wseg_resnet38_aff")


def both_networks(root: Path, seed: int = 0) -> tuple[nn.Module, AffinityNet]:
    """(official Net, ppcseg AffinityNet) in eval mode with the same head weights (the official initialisation)."""
    module = official_affinity_module(root)
    torch.manual_seed(seed)
    official = module.Net().eval()
    ours = AffinityNet(FixedBackbone())
    ours.load_state_dict(official.state_dict())
    return official, ours.eval()


def padded_input(x: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) zero-padded at the bottom and right to multiples of 8, as both inference codes pad."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -(-w // STRIDE) * STRIDE - w, 0, -(-h // STRIDE) * STRIDE - h))
