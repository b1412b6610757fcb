"""The CAM network of SEAM + PPC and EPS + PPC (docs/faithfulness.md): backbone, fc8, PCM and projection head.

    SEAM  fc8 21 channels, background channel 0; Dropout2d(0.5) on conv6 feeds fc8 and the projection head.
    EPS   fc8 21 channels, background channel 20 (VOC class k -> channel k-1); no dropout.

PCM (pixel correlation module) refines the CAM with an affinity built from the input image and the detached
conv4/conv5 taps; it is trained only by the losses that read its output. The EPS baseline (method eps, ppc false) has
no PCM, as in EPS itself; its forward returns cam_rv None. The projection head (1x1 conv -> 128, ReLU) exists only
with ppc=True.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ppcseg.models.backbones import build_backbone
from ppcseg.utils.checkpoint import load_checkpoint
from ppcseg.utils.errors import InputError
from ppcseg.utils.optim import poly_param_groups

NUM_CLASSES = 21
ARCH = "cam_net"
METHODS = ("seam", "eps")
PROJ_DIM = 128


class CamNet(nn.Module):
    """forward(x) -> {'cam': raw fc8 CAM, 'cam_rv': PCM-refined CAM or None, 'proj': projection or None}.

    All three at feature resolution (input / 8); use `upsample` to bring a map to the input size.
    """

    def __init__(self, backbone: nn.Module, method: str = "seam", ppc: bool = True) -> None:
        super().__init__()
        if method not in METHODS:
            raise InputError(f"cam.method: '{method}' is unknown; choose one of {', '.join(METHODS)}")
        self.method = method
        self.ppc = ppc
        self.background_channel = 0 if method == "seam" else NUM_CLASSES - 1
        self.use_pcm = method == "seam" or ppc
        self.backbone = backbone
        ch = backbone.channels
        self.dropout7: nn.Module = nn.Dropout2d(0.5) if method == "seam" else nn.Identity()
        self.fc8 = nn.Conv2d(ch["conv6"], NUM_CLASSES, 1, bias=False)
        nn.init.xavier_uniform_(self.fc8.weight)
        self.new_modules: list[nn.Module] = [self.fc8]
        if self.use_pcm:
            self.f8_3 = nn.Conv2d(ch["conv4"], 64, 1, bias=False)
            self.f8_4 = nn.Conv2d(ch["conv5"], 128, 1, bias=False)
            self.f9 = nn.Conv2d(64 + 128 + 3, 192, 1, bias=False)
            nn.init.kaiming_normal_(self.f8_3.weight)
            nn.init.kaiming_normal_(self.f8_4.weight)
            nn.init.xavier_uniform_(self.f9.weight, gain=4)
            self.new_modules += [self.f8_3, self.f8_4, self.f9]
        self.fc_proj: nn.Conv2d | None = None
        if ppc:
            self.fc_proj = nn.Conv2d(ch["conv6"], PROJ_DIM, 1, bias=False)
            nn.init.xavier_uniform_(self.fc_proj.weight)
            self.new_modules.append(self.fc_proj)
        self.meta: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        taps = self.backbone(x)
        feature = self.dropout7(taps["conv6"])
        cam = self.fc8(feature)
        cam_rv = self._pcm(cam, taps, x) if self.use_pcm else None
        proj = F.relu(self.fc_proj(feature)) if self.fc_proj is not None else None
        return {"cam": cam, "cam_rv": cam_rv, "proj": proj}

    @staticmethod
    def upsample(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bilinear resize with align_corners=True, as the official nets upsample their CAMs to the input."""
        return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

    def _pcm_input(self, cam: torch.Tensor) -> torch.Tensor:
        """Spec 2.2: ReLU'd CAM max-normalised, background = 1 - max_fg, non-max foreground channels zeroed."""
        n, c = cam.shape[:2]
        bg = self.background_channel
        fg = [k for k in range(c) if k != bg]
        cam = F.relu(cam.detach())
        peak = cam.flatten(2).amax(dim=2)[..., None, None] + 1e-5
        norm = F.relu(cam - 1e-5) / peak
        fg_norm = norm[:, fg]
        fg_max = fg_norm.amax(dim=1, keepdim=True)
        out = torch.empty_like(norm)
        out[:, fg] = torch.where(fg_norm < fg_max, torch.zeros_like(fg_norm), fg_norm)
        out[:, bg] = 1 - fg_max[:, 0]
        return out

    def _pcm(self, cam: torch.Tensor, taps: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        n, _, h, w = cam.shape
        with torch.no_grad():
            cam_in = self._pcm_input(cam).view(n, NUM_CLASSES, h * w)
        f8_3 = F.relu(self.f8_3(taps["conv4"].detach()))
        f8_4 = F.relu(self.f8_4(taps["conv5"].detach()))
        small = F.interpolate(image, (h, w), mode="bilinear", align_corners=True)
        f = self.f9(torch.cat([small, f8_3, f8_4], dim=1)).view(n, -1, h * w)
        f = f / (torch.norm(f, dim=1, keepdim=True) + 1e-5)
        aff = F.relu(torch.matmul(f.transpose(1, 2), f))
        aff = aff / (aff.sum(dim=1, keepdim=True) + 1e-5)  # column-normalised: each output pixel averages inputs
        return torch.matmul(cam_in, aff).view(n, NUM_CLASSES, h, w)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """The 4 SGD groups of the official optimiser: backbone weights 1x, backbone biases 2x (no decay), new-layer weights 10x,
        new-layer biases 20x (no decay). Only conv and GroupNorm parameters that train; BatchNorm is never optimised.
        Each group carries `lr_mult` for the poly schedule.
        """
        return poly_param_groups(self, self.new_modules + list(self.backbone.new_layers()), lr, weight_decay)


def cam_net_meta(cam_params: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint meta that `load_cam_net` rebuilds the network from."""
    return {
        "arch": ARCH,
        "method": cam_params["method"],
        "backbone": cam_params["backbone"],
        "ppc": bool(cam_params["ppc"]),
        "num_classes": NUM_CLASSES,
        "cam_params": cam_params,
    }


def build_cam_net(cam_params: dict[str, Any], weights: str | Path | None) -> CamNet:
    """The CAM network of the `cam` params section; backbone weights from a local file (None: random init)."""
    backbone = build_backbone(cam_params["backbone"], weights)
    net = CamNet(backbone, method=cam_params["method"], ppc=bool(cam_params["ppc"]))
    net.meta = cam_net_meta(cam_params)
    return net


def load_cam_net(path: str | Path) -> CamNet:
    """A trained CAM network from a train-cam checkpoint, in eval mode, with `meta` from the checkpoint."""
    ckpt = load_checkpoint(path, expect={"arch": ARCH, "num_classes": NUM_CLASSES})
    if "model" not in ckpt:
        raise InputError(f"{path}: checkpoint has no 'model' state")
    meta = ckpt["meta"]
    try:
        net = build_cam_net(meta["cam_params"] | {k: meta[k] for k in ("method", "backbone", "ppc")}, None)
    except KeyError as err:
        raise InputError(f"{path}: checkpoint meta lacks {err}") from None
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise InputError(
            f"{path}: model state does not match a {meta['method']}/{meta['backbone']} CamNet: {err}"
        ) from err
    net.meta = meta
    return net.eval()
