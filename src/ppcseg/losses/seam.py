"""SEAM's losses and the variant the EPS route of PPC uses (docs/faithfulness.md).

Terms, for the raw CAMs ``cam`` and the PCM-refined CAMs ``cam_rv`` of two views of one batch:

* ``cls``: multi-label soft-margin loss of the global average of each view's raw CAM (foreground channels), averaged
  over the two views;
* ``rvmin``: adaptive min-pooling on the label-masked PCM CAM: the mean ReLU of the h*w//4 smallest per-pixel
  foreground maxima of each image, averaged over the two views;
* ``er``: mean absolute difference between the max-normalised, label-masked foreground CAMs of the two views, view 1
  bilinearly resized (``align_corners=True``) to view 2's size;
* ``ecr``: for each view, the mean of the floor(0.2 * C*h*w) largest entries per image of
  ``|max_onehot(other view's CAM, detached) - own PCM CAM|``, summed over the two views.

Sizes: all maps are compared at ``cam2``'s spatial size. The SEAM route passes view-1 outputs at view-1 input size
and view-2 outputs at view-2 input size (128 at paper size); the EPS route passes feature-resolution maps (16x16 for
view 2). ``layout="eps"`` puts the background last and keeps the official ``max_onehot`` that treats channel 0 as
background ([quirk]: aeroplane is never suppressed and background competes as a foreground channel);
``fix_eps_max_onehot=True`` keeps the real background channel instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BG_CHANNEL",
    "classification_loss",
    "er_ecr_losses",
    "max_norm",
    "max_onehot",
    "rvmin_loss",
    "seam_losses",
]

BG_CHANNEL = {"seam": 0, "eps": 20}
_ECR_FRACTION = 0.2
_EPS = 1e-5


def _fg(x: Tensor, bg_channel: int) -> Tensor:
    """The channels of ``x`` (dim 1) other than ``bg_channel``, in order."""
    c = x.shape[1]
    bg = bg_channel % c
    return torch.cat([x[:, :bg], x[:, bg + 1 :]], dim=1)


def max_norm(x: Tensor, eps: float = _EPS) -> Tensor:
    """Per (image, channel) ReLU(ReLU(x) - min - eps) / (max - min + eps) of a (N, C, H, W) map."""
    x = F.relu(x)
    flat = x.flatten(2)
    low = flat.amin(dim=2)[..., None, None]
    high = flat.amax(dim=2)[..., None, None]
    return F.relu(x - low - eps) / (high - low + eps)


def classification_loss(cam: Tensor, labels: Tensor, *, bg_channel: int = 0) -> Tensor:
    """Multi-label soft-margin loss of the spatial mean of ``cam`` (N, C, H, W) over its foreground channels.

    ``labels`` is (N, C) in the same layout, or (N, C-1) foreground only.
    """
    scores = _fg(cam.mean(dim=(2, 3)), bg_channel)
    if labels.shape[1] == cam.shape[1]:
        labels = _fg(labels, bg_channel)
    return F.multilabel_soft_margin_loss(scores, labels.to(scores.dtype))


def rvmin_loss(cam_rv: Tensor, labels: Tensor, *, bg_channel: int = 0) -> Tensor:
    """Adaptive min-pooling: mean of ReLU of the h*w//4 smallest per-pixel foreground maxima of label-masked CAMs."""
    n, _, h, w = cam_rv.shape
    masked = _fg(cam_rv * labels[:, :, None, None].to(cam_rv.dtype), bg_channel)
    k = h * w // 4
    smallest = torch.topk(masked.amax(dim=1).reshape(n, -1), k, dim=1, largest=False).values
    return F.relu(smallest).sum() / (k * n)


def max_onehot(x: Tensor, *, keep_channel: int = 0) -> Tensor:
    """Keep channel ``keep_channel``; of the others keep, per pixel, only the values equal to their maximum."""
    rest = torch.ones(x.shape[1], dtype=torch.bool, device=x.device)
    rest[keep_channel] = False
    rest_max = x[:, rest].amax(dim=1, keepdim=True)
    drop = (x != rest_max) & rest[None, :, None, None]
    return x.masked_fill(drop, 0.0)


def er_ecr_losses(
    cam1: Tensor,
    cam_rv1: Tensor,
    cam2: Tensor,
    cam_rv2: Tensor,
    labels: Tensor,
    *,
    bg_channel: int = 0,
    onehot_keep_channel: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Equivariant regularisation and equivariant cross regularisation at ``cam2``'s spatial size.

    ``labels`` (N, C) with the background entry set. ``onehot_keep_channel`` is the channel :func:`max_onehot` keeps
    (None: ``bg_channel``; the official EPS variant uses 0 whatever the layout).
    """
    size = cam2.shape[-2:]
    y = labels[:, :, None, None].to(cam2.dtype)
    c1 = F.interpolate(max_norm(cam1), size=size, mode="bilinear", align_corners=True) * y
    c2 = max_norm(cam2) * y
    er = (_fg(c1, bg_channel) - _fg(c2, bg_channel)).abs().mean()

    r1 = F.interpolate(max_norm(cam_rv1), size=size, mode="bilinear", align_corners=True) * y
    r2 = max_norm(cam_rv2) * y
    keep = bg_channel if onehot_keep_channel is None else onehot_keep_channel

    def target(c: Tensor) -> Tensor:
        c = c.detach().clone()
        c[:, bg_channel] = 1 - _fg(c, bg_channel).amax(dim=1)
        return max_onehot(c, keep_channel=keep)

    n, ch, h, w = r2.shape
    k = int(ch * h * w * _ECR_FRACTION)
    ecr = sum(
        torch.topk((target(other) - own).abs().reshape(n, -1), k, dim=1).values.mean()
        for other, own in ((c2, r1), (c1, r2))
    )
    return er, ecr


def seam_losses(
    cam1: Tensor,
    cam_rv1: Tensor,
    cam2: Tensor,
    cam_rv2: Tensor,
    labels: Tensor,
    *,
    layout: str = "seam",
    fix_eps_max_onehot: bool = False,
) -> dict[str, Tensor]:
    """SEAM's four terms and their sum ; ``layout="eps"`` gives the EPS-route variant.

    ``cam1``, ``cam_rv1``: view-1 raw and PCM CAMs; ``cam2``, ``cam_rv2``: the same for view 2, whose spatial size sets
    the ER/ECR resolution; ``labels`` (N, 21) in the layout's order with the background entry set.
    """
    if layout not in BG_CHANNEL:
        raise ValueError(f"layout must be one of {sorted(BG_CHANNEL)}, got {layout!r}")
    bg = BG_CHANNEL[layout]
    for name, t in (("cam1", cam1), ("cam_rv1", cam_rv1), ("cam2", cam2), ("cam_rv2", cam_rv2)):
        if t.dim() != 4 or t.shape[:2] != labels.shape:
            raise ValueError(f"{name} must be (N, C, H, W) matching labels {tuple(labels.shape)}, got {tuple(t.shape)}")
    keep = 0 if layout == "eps" and not fix_eps_max_onehot else bg
    cls = (classification_loss(cam1, labels, bg_channel=bg) + classification_loss(cam2, labels, bg_channel=bg)) / 2
    rvmin = (rvmin_loss(cam_rv1, labels, bg_channel=bg) + rvmin_loss(cam_rv2, labels, bg_channel=bg)) / 2
    er, ecr = er_ecr_losses(cam1, cam_rv1, cam2, cam_rv2, labels, bg_channel=bg, onehot_keep_channel=keep)
    return {"cls": cls, "rvmin": rvmin, "er": er, "ecr": ecr, "total": cls + rvmin + er + ecr}
