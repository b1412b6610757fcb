"""Segmentation inference under a test protocol, shared by eval-seg, export-predictions and the report.

Protocols: `single` is one forward pass at the original size and argmax. `msf-crf` is the paper's: the image at every
`segmentation.test.scales` (and mirrored when `flip`), logits resized to the image and averaged, softmax, dense CRF
with `segmentation.test.crf_params` (when `crf`), argmax. The CRF may only choose among the labels the network
predicted for that image, so it refines boundaries but never adds a class. A neutral module: no stage module imports
another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ppcseg.refine.crf import crf_from_probs

PROTOCOLS: tuple[str, ...] = ("single", "msf-crf")


@dataclass(frozen=True)
class InferenceProtocol:
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crf_params: dict[str, float] | None = field(default=None)

    @classmethod
    def from_params(cls, name: str, test: dict[str, Any]) -> InferenceProtocol:
        if name == "single":
            return cls()
        return cls(
            tuple(float(s) for s in test["scales"]), bool(test["flip"]), test["crf_params"] if test["crf"] else None
        )

    def settings(self) -> dict[str, Any]:
        return {"scales": list(self.scales), "flip": self.flip, "crf": self.crf_params is not None}


def _normalise(model: torch.nn.Module, image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> (1, 3, H, W) normalised like the model's data preprocessor (whose mean is RGB)."""
    pre = model.data_preprocessor
    x = torch.as_tensor(np.array(image)).permute(2, 0, 1).float().to(pre.mean.device)
    return ((x - pre.mean) / pre.std).unsqueeze(0)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, image: np.ndarray, scales: tuple[float, ...] = (1.0,), flip: bool = False
) -> torch.Tensor:
    """Mean over scales (and mirror images) of the logits resized to the image: (C, H, W) float32 on the CPU."""
    height, width = image.shape[:2]
    x = _normalise(model, image)
    total, count = None, 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        xs = x if size == (height, width) else F.interpolate(x, size, mode="bilinear", align_corners=False)
        batch = torch.cat([xs, xs.flip(-1)]) if flip else xs
        metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)] * batch.shape[0]
        logits = model.encode_decode(batch, metas)
        if flip:
            logits = torch.stack([logits[0], logits[1].flip(-1)])
        logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False).sum(0)
        total = logits if total is None else total + logits
        count += batch.shape[0]
    return (total / count).float().cpu()


def predict_labels(model: torch.nn.Module, image: np.ndarray, protocol: InferenceProtocol) -> np.ndarray:
    """Label map uint8 (H, W) of one RGB image under a test protocol."""
    logits = predict_logits(model, image, protocol.scales, protocol.flip)
    labels = logits.argmax(0).numpy().astype(np.uint8)
    if protocol.crf_params is None:
        return labels
    probs = torch.softmax(logits, 0).numpy()
    q = crf_from_probs(np.array(image), probs, **protocol.crf_params)  # pydensecrf needs a writable buffer
    absent = np.setdiff1d(np.arange(q.shape[0]), np.unique(labels))
    q[absent] = -np.inf  # the CRF refines the network's classes, it never introduces a new one
    return q.argmax(0).astype(np.uint8)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
