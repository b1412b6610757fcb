"""la/ha CRF labels: the official _crf_inference (wseg aff_prepare.py, defined inside its __main__ block, taken from
the script's syntax tree) against ppcseg.refine.crf.crf_from_labels, on generated images and CAMs, alphas 4 and 24."""

from __future__ import annotations

import sys

import numpy as np
import pydensecrf.densecrf as dcrf
from common import function_from_script, generated, parser, report, roots
from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian, unary_from_labels

from ppcseg.refine.affinity_labels import background_argmax
from ppcseg.refine.crf import crf_from_labels

NEEDS = ["wseg"]


def main() -> int:
    args = parser(__doc__, NEEDS).parse_args()
    root = roots(args, NEEDS)["wseg"]
    namespace = {
        "np": np,
        "dcrf": dcrf,
        "unary_from_labels": unary_from_labels,
        "create_pairwise_gaussian": create_pairwise_gaussian,
        "create_pairwise_bilateral": create_pairwise_bilateral,
    }
    official = function_from_script(root / "aff_prepare.py", "_crf_inference", namespace)
    worst, n = 0.0, 0
    for image, _, classes, cams in generated(args.images):
        for alpha in (4, 24):
            hard = background_argmax(classes, cams, alpha)
            # The official script argmaxes a 21-channel tensor: VOC labels, as background_argmax returns.
            theirs = official(np.ascontiguousarray(image), hard.astype(np.uint8))
            ours = crf_from_labels(np.ascontiguousarray(image), hard, 21)
            worst = max(worst, float(np.abs(theirs - ours).max()))
            n += 1
    return (
        0
        if report(
            f"wseg aff_prepare.py _crf_inference vs crf_from_labels, {args.images} images x 2 alphas",
            f"max difference {worst:g} over {n} marginal maps (21 channels)",
            "identical 21-channel marginals (max difference 0.0 over 40 images x 2 alphas)",
            worst == 0.0,
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
