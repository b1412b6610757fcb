"""Segmentation inference under a test protocol, shared by eval-seg, export-predictions and the report.

Protocols: `single` is one forward pass at the original size and argmax. `msf-crf` is the paper's, run as the official
test scripts run it (docs/faithfulness.md, "Segmentation test protocol"): the normalised image resized to every
`segmentation.test.scales` with OpenCV bicubic interpolation (and mirrored when `flip`), logits resized back to the
image bilinearly with aligned corners and averaged, softmax, then (when `crf`) a dense CRF with
`segmentation.test.crf_params` on the probabilities clipped at 1e-5 and on the image as the official code hands it
over (after a float32 normalise/denormalise round trip, truncated to uint8), argmax over all classes. Two departures
are switches, off by default: `fix_logit_alignment` and `crf_network_classes_only`. A neutral module: no stage module
imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ppcseg.refine.crf import CrfSettings, crf_from_probs

PROTOCOLS: tuple[str, ...] = ("single", "msf-crf")
# pydensecrf's unary_from_softmax, which the official CRF uses, clips probabilities to [1e-5, 1] before -log.
PROB_CLIP = 1e-5


@dataclass(frozen=True)
class InferenceProtocol:
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crf_params: dict[str, float] | None = field(default=None)
    fix_logit_alignment: bool = False
    crf_network_classes_only: bool = False

    @classmethod
    def from_params(cls, name: str, test: dict[str, Any]) -> InferenceProtocol:
        if name == "single":
            return cls()
        return cls(
            tuple(float(s) for s in test["scales"]),
            bool(test["flip"]),
            test["crf_params"] if test["crf"] else None,
            bool(test["fix_logit_alignment"]),
            bool(test["crf_network_classes_only"]),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "scales": list(self.scales),
            "flip": self.flip,
            "crf": self.crf_params is not None,
            "fix_logit_alignment": self.fix_logit_alignment,
            "crf_network_classes_only": self.crf_network_classes_only,
        }


def _mean_std(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The data preprocessor's RGB mean and std (pixel units) as float64 arrays."""
    pre = model.data_preprocessor
    return (pre.mean.detach().double().cpu().numpy().reshape(3), pre.std.detach().double().cpu().numpy().reshape(3))


def scaled_inputs(model: torch.nn.Module, image: np.ndarray, scale: float) -> np.ndarray:
    """The network input at one test scale: (H', W', 3) float32, the image normalised like the model's data
    preprocessor, then resized by `scale` with OpenCV bicubic interpolation (output size round(side * scale), source
    coordinates from the exact factor), as the official test does."""
    mean, std = _mean_std(model)
    x = (np.asarray(image, dtype=np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
    return cv2.resize(x, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    image: np.ndarray,
    scales: tuple[float, ...] = (1.0,),
    flip: bool = False,
    fix_logit_alignment: bool = False,
) -> torch.Tensor:
    """Mean over scales (and mirror images) of the logits resized to the image: (C, H, W) float32 on the CPU.

    The official test resizes the logits back with align_corners=True although the images were resized with pixel
    centres (OpenCV); `fix_logit_alignment` uses align_corners=False, consistent with the image resize.
    """
    height, width = image.shape[:2]
    dev = model.data_preprocessor.mean.device
    total, count = None, 0
    for scale in scales:
        xs = torch.from_numpy(scaled_inputs(model, image, scale)).permute(2, 0, 1).unsqueeze(0).to(dev)
        batch = torch.cat([xs, xs.flip(-1)]) if flip else xs
        size = tuple(xs.shape[-2:])
        metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)] * batch.shape[0]
        logits = model.encode_decode(batch, metas)
        if flip:
            logits = torch.stack([logits[0], logits[1].flip(-1)])
        logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=not fix_logit_alignment)
        total = logits.sum(0) if total is None else total + logits.sum(0)
        count += batch.shape[0]
    return (total / count).float().cpu()


def crf_image(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The image the official test gives its CRF: normalised in float32 with mean/std in [0, 1] units, denormalised,
    times 255, clipped and truncated to uint8. Rounding turns many dark values (and a few bright ones) one level
    darker; with the CRF's colour std of 3 that moves some boundaries (docs/faithfulness.md)."""
    # The preprocessor holds mean and std times 255 in float32; rounding the quotient to 6 decimals recovers the
    # official [0, 1] constants (3 decimals) exactly, whose float32 rounding decides which values lose a level.
    mean, std = (np.round(v / 255, 6).astype(np.float32) for v in _mean_std(model))
    x = (np.asarray(image, dtype=np.float32) / 255 - mean) / std
    x = (x * std + mean) * 255
    return np.clip(x, 0, 255).astype(np.uint8)


def predict_labels(model: torch.nn.Module, image: np.ndarray, protocol: InferenceProtocol) -> np.ndarray:
    """Label map uint8 (H, W) of one RGB image under a test protocol."""
    logits = predict_logits(model, image, protocol.scales, protocol.flip, protocol.fix_logit_alignment)
    labels = logits.argmax(0).numpy().astype(np.uint8)
    if protocol.crf_params is None:
        return labels
    probs = np.clip(torch.softmax(logits, 0).numpy(), PROB_CLIP, 1.0)
    q = crf_from_probs(crf_image(model, image), probs, CrfSettings.from_params(protocol.crf_params))
    if protocol.crf_network_classes_only:
        absent = np.setdiff1d(np.arange(q.shape[0]), np.unique(labels))
        q[absent] = -np.inf  # the CRF refines the network's classes, it never introduces a new one
    return q.argmax(0).astype(np.uint8)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
