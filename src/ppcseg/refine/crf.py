"""Dense CRF (Kraehenbuehl and Koltun) through pydensecrf2, in the two forms the PPC pipeline uses."""

from __future__ import annotations

import numpy as np


def _densecrf():
    import pydensecrf.densecrf as dcrf  # imported lazily: it is a compiled extension

    return dcrf


def _writable(image: np.ndarray) -> np.ndarray:
    """pydensecrf needs a C-contiguous, writable uint8 buffer (load_image returns read-only arrays)."""
    return np.require(image, np.uint8, ["C", "W"])


def crf_from_probs(
    image: np.ndarray,
    probs: np.ndarray,
    *,
    iters: int = 10,
    gaussian_sxy: float = 3,
    gaussian_compat: float = 3,
    bilateral_sxy: float = 80,
    bilateral_srgb: float = 13,
    bilateral_compat: float = 10,
) -> np.ndarray:
    """Soft CRF: unary = -log(probs). image uint8 (H, W, 3), probs float (C, H, W). Returns (C, H, W) float32."""
    n_labels = probs.shape[0]
    unary = -np.log(np.clip(probs, 1e-8, None)).reshape(n_labels, -1)
    pairwise = (gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat)
    return _mean_field(image, unary, probs.shape[1:], iters, *pairwise)


def crf_from_labels(
    image: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    *,
    gt_prob: float = 0.7,
    iters: int = 10,
    gaussian_sxy: float = 3,
    gaussian_compat: float = 3,
    bilateral_sxy: float = 80,
    bilateral_srgb: float = 13,
    bilateral_compat: float = 10,
) -> np.ndarray:
    """Hard-label CRF (unary from labels with confidence gt_prob). labels int (H, W) in 0..n_labels-1.

    Returns (n_labels, H, W) float32 marginals.
    """
    _densecrf()  # the clear error when pydensecrf is missing
    from pydensecrf.utils import unary_from_labels

    unary = unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False)
    pairwise = (gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat)
    return _mean_field(image, unary, labels.shape, iters, *pairwise)


def _mean_field(
    image: np.ndarray,
    unary: np.ndarray,
    shape: tuple[int, int],
    iters: int,
    gaussian_sxy: float,
    gaussian_compat: float,
    bilateral_sxy: float,
    bilateral_srgb: float,
    bilateral_compat: float,
) -> np.ndarray:
    """Dense CRF inference from a (C, H*W) unary energy with the Gaussian and bilateral kernels: (C, H, W) float32."""
    n_labels, (height, width) = unary.shape[0], shape
    crf = _densecrf().DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=_writable(image), compat=bilateral_compat)
    q = crf.inference(iters)
    return np.asarray(q, dtype=np.float32).reshape(n_labels, height, width)
