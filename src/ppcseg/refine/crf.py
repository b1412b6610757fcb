"""Dense CRF (Kraehenbuehl and Koltun) through pydensecrf2, in the two forms the PPC pipeline uses.

The kernels' feature vectors come in one of two orders, as in the official code (docs/faithfulness.md):
(x, y[, r, g, b]) from `DenseCRF2D.addPairwiseGaussian` / `addPairwiseBilateral` (EPS masks, segmentation test), or
(y, x[, r, g, b]) from `pydensecrf.utils.create_pairwise_gaussian` / `create_pairwise_bilateral` (the la/ha maps).
The kernels are equal, but the permutohedral lattice that approximates them is not symmetric in the feature order,
so the two give slightly different marginals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np


def _densecrf():
    import pydensecrf.densecrf as dcrf  # imported lazily: it is a compiled extension

    return dcrf


def _writable(image: np.ndarray) -> np.ndarray:
    """pydensecrf needs a C-contiguous, writable uint8 buffer (load_image returns read-only arrays)."""
    return np.require(image, np.uint8, ["C", "W"])


@dataclass(frozen=True)
class CrfSettings:
    """Mean-field iterations and the Gaussian and bilateral kernels, as a params section names them."""

    iters: int = 10
    gaussian_sxy: float = 3
    gaussian_compat: float = 3
    bilateral_sxy: float = 80
    bilateral_srgb: float = 13
    bilateral_compat: float = 10

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> CrfSettings:
        """The settings of a params section holding every field (other keys of the section are left)."""
        return cls(**{f.name: section[f.name] for f in fields(cls)})


def crf_from_probs(image: np.ndarray, probs: np.ndarray, settings: CrfSettings = CrfSettings()) -> np.ndarray:
    """Soft CRF: unary = -log(probs). image uint8 (H, W, 3), probs float (C, H, W). Returns (C, H, W) float32."""
    n_labels = probs.shape[0]
    unary = -np.log(np.clip(probs, 1e-8, None)).reshape(n_labels, -1)
    return _mean_field(image, unary, probs.shape[1:], settings)


def crf_from_labels(
    image: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    settings: CrfSettings = CrfSettings(),
    *,
    gt_prob: float = 0.7,
    yx_features: bool = True,
) -> np.ndarray:
    """Hard-label CRF (unary from labels with confidence gt_prob). labels int (H, W) in 0..n_labels-1.

    `yx_features`: kernels in (y, x, ...) order as the official la/ha maps build them; False: (x, y, ...).
    Returns (n_labels, H, W) float32 marginals.
    """
    _densecrf()  # the clear error when pydensecrf is missing
    from pydensecrf.utils import unary_from_labels

    unary = unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False)
    return _mean_field(image, unary, labels.shape, settings, yx_features=yx_features)


def _mean_field(
    image: np.ndarray, unary: np.ndarray, shape: tuple[int, int], kernels: CrfSettings, yx_features: bool = False
) -> np.ndarray:
    """Dense CRF inference from a (C, H*W) unary energy with the Gaussian and bilateral kernels: (C, H, W) float32.

    The kernels' features are (x, y, r, g, b), or (y, x, r, g, b) with `yx_features` (see the module docstring).
    """
    dcrf = _densecrf()
    n_labels, (height, width) = unary.shape[0], shape
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    k = kernels
    if yx_features:
        from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian

        # Same kernel type and normalisation as the addPairwise* defaults; only the feature order differs.
        kind = {"kernel": dcrf.DIAG_KERNEL, "normalization": dcrf.NORMALIZE_SYMMETRIC}
        gaussian = create_pairwise_gaussian(sdims=(k.gaussian_sxy, k.gaussian_sxy), shape=(height, width))
        crf.addPairwiseEnergy(gaussian, compat=k.gaussian_compat, **kind)
        bilateral = create_pairwise_bilateral(
            sdims=(k.bilateral_sxy, k.bilateral_sxy), schan=(k.bilateral_srgb,) * 3, img=_writable(image), chdim=2
        )
        crf.addPairwiseEnergy(bilateral, compat=k.bilateral_compat, **kind)
    else:
        crf.addPairwiseGaussian(sxy=k.gaussian_sxy, compat=k.gaussian_compat)
        crf.addPairwiseBilateral(
            sxy=k.bilateral_sxy, srgb=k.bilateral_srgb, rgbim=_writable(image), compat=k.bilateral_compat
        )
    q = crf.inference(k.iters)
    return np.asarray(q, dtype=np.float32).reshape(n_labels, height, width)
