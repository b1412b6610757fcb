"""Segmentation test CRF: the official dense_crf (wseg segmentation/lib/utils/DenseCRF.py, imported unchanged) against
ppcseg.refine.crf.crf_from_probs with the same settings (CrfSettings: Gaussian sxy 3 compat 3, bilateral sxy 32 srgb
13 compat 10, as dense_crf fixes them) on probabilities clipped at 1e-5 as segment/inference.py clips them
(PROB_CLIP), at 1 and 5 iterations, on generated images and 21-class probabilities (softmax of logits from the CAMs)."""

from __future__ import annotations

import sys

import numpy as np
from common import generated, load_file, parser, report, roots

from ppcseg.refine.crf import CrfSettings, crf_from_probs
from ppcseg.segment.inference import PROB_CLIP

NEEDS = ["wseg"]
ITERS = (1, 5)


def probabilities(classes: np.ndarray, cams: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(21, H, W) float32 softmax of logits: background 10 * (1 - max CAM), class c 14 * its CAM, plus
    noise (confident, as a trained network is: many values under the 1e-5 clip)."""
    logits = rng.normal(0, 0.5, (21, *cams.shape[1:]))
    logits[0] += 10 * (1 - cams.max(axis=0))
    logits[classes] += 14 * cams
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32)


def main() -> int:
    args = parser(__doc__, NEEDS).parse_args()
    root = roots(args, NEEDS)["wseg"]
    official = load_file(root / "segmentation" / "lib" / "utils" / "DenseCRF.py", "official_wseg_densecrf")
    rng = np.random.default_rng(1)
    worst = unclipped = 0.0
    n = 0
    for image, _, classes, cams in generated(args.images):
        probs = probabilities(classes, cams, rng)
        chw = np.ascontiguousarray(image.transpose(2, 0, 1))  # the official function takes (3, H, W)
        for iters in ITERS:
            settings = CrfSettings(
                iters=iters,
                gaussian_sxy=3,
                gaussian_compat=3,
                bilateral_sxy=32,
                bilateral_srgb=13,
                bilateral_compat=10,
            )
            theirs = official.dense_crf(probs, img=chw, n_classes=21, n_iters=iters)
            ours = crf_from_probs(image, np.clip(probs, PROB_CLIP, 1.0), settings)
            worst = max(worst, float(np.abs(theirs - ours).max()))
            # Without the clip (crf_from_probs alone clips at 1e-8), to show the comparison sees it.
            unclipped = max(unclipped, float(np.abs(theirs - crf_from_probs(image, probs, settings)).max()))
            n += 1
    return (
        0
        if report(
            f"wseg DenseCRF.py dense_crf vs crf_from_probs, {args.images} images x {len(ITERS)} iteration counts "
            f"{ITERS}",
            f"max difference {worst:g} over {n} marginal maps (21 channels) (the same calls without the "
            f"{PROB_CLIP:g} clip: {unclipped:.2g}, so the comparison sees the clip)",
            "identical marginals (max difference 0) with probabilities clipped at 1e-5",
            worst == 0.0,
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
