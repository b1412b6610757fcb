"""EPS saliency loss (Lee et al., CVPR 2021; spec section 3), background channel last.

The CAM's softmax is split into a foreground map (the present classes that overlap the saliency map) and a
background map (background plus the present classes that do not); their blend must reproduce the saliency map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["saliency_loss"]

_OVERLAP_EPS = 1e-4
NUM_FG = 20


def saliency_loss(cam: Tensor, saliency: Tensor, labels: Tensor, *, tau: float = 0.4, lam: float = 0.5) -> Tensor:
    """MSE between the saliency map and lam * fg + (1 - lam) * bg built from ``softmax(cam)``.

    ``cam`` (N, 21, h, w) with background last; ``saliency`` (N, 1, H, W) in [0, 1], nearest-resized to (h, w);
    ``labels`` (N, 20) or (N, 21) multi-hot, foreground first. A present class c counts as salient when
    sum(round(P_c) * round(S)) / (sum(round(P_c)) + 1e-4) > ``tau``; fg sums the salient present classes, bg is
    1 - (P_bg + the non-salient present classes). Absent classes enter neither map.
    """
    n, c, h, w = cam.shape
    if c != NUM_FG + 1:
        raise ValueError(f"cam must have {NUM_FG + 1} channels (background last), got {c}")
    if saliency.dim() != 4 or saliency.shape[:2] != (n, 1):
        raise ValueError(f"saliency must be (N, 1, H, W) with N={n}, got {tuple(saliency.shape)}")
    if labels.shape not in ((n, NUM_FG), (n, NUM_FG + 1)):
        raise ValueError(f"labels must be ({n}, {NUM_FG}) or ({n}, {NUM_FG + 1}), got {tuple(labels.shape)}")

    prob = torch.softmax(cam, dim=1)
    sal = F.interpolate(saliency.to(prob.dtype), size=(h, w), mode="nearest")
    present = (labels[:, :NUM_FG] > 0)[:, :, None, None]
    with torch.no_grad():
        hard_fg = torch.round(prob[:, :NUM_FG])
        overlap = (hard_fg * torch.round(sal)).sum(dim=(2, 3)) / (hard_fg.sum(dim=(2, 3)) + _OVERLAP_EPS)
        salient = (overlap > tau)[:, :, None, None]
    fg_prob = prob[:, :NUM_FG]
    fg = (fg_prob * (present & salient)).sum(dim=1, keepdim=True)
    bg = 1 - (prob[:, NUM_FG:] + (fg_prob * (present & ~salient)).sum(dim=1, keepdim=True))
    pred = lam * fg + (1 - lam) * bg
    return F.mse_loss(pred, sal)
