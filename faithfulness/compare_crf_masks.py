"""EPS-route pseudo-masks: the official _crf_with_alpha (wseg esp contrast_infer.py, taken from the script's syntax
tree) with util/imutils.py crf_inference, then the argmax of pseudo_label_gen.py, against
ppcseg.refine.crf_masks.crf_mask with the params.yaml settings (alpha 8, iters 5: the official t)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from common import function_from_script, generated, load_file, parser, report, roots

from ppcseg.config import load_params
from ppcseg.refine.crf_masks import crf_mask

NEEDS = ["wseg-esp"]
ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    args = parser(__doc__, NEEDS).parse_args()
    root = roots(args, NEEDS)["wseg-esp"]
    imutils = load_file(root / "util" / "imutils.py", "official_esp_imutils")
    official = function_from_script(root / "contrast_infer.py", "_crf_with_alpha", {"np": np, "imutils": imutils})
    cfg = load_params([str(ROOT / "params.yaml")])["crf_masks"]
    differing = total = 0
    for image, _, classes, cams in generated(args.images):
        cam_dict = {int(c) - 1: cams[i] for i, c in enumerate(classes)}  # the script's keys: class index 0..19
        crf = official(image, cam_dict, cfg["alpha"], t=cfg["iters"])
        keys = list(crf.keys())  # 0 = background, then key + 1 = VOC class
        theirs = np.asarray(keys)[np.argmax(np.stack([crf[k] for k in keys]), axis=0)]
        ours = crf_mask(image, classes, cams, cfg)
        differing += int((theirs != ours).sum())
        total += ours.size
    return (
        0
        if report(
            f"wseg@esp _crf_with_alpha + argmax vs crf_mask, {args.images} images",
            f"{differing} of {total} pixels differ",
            "identical masks (0 differing pixels over 40 images)",
            differing == 0,
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
