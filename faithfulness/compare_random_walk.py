"""Random walk: the official per-image loop of wseg aff_infer.py (its `__main__` block, taken from the script's syntax
tree and run unchanged, one image a run: padding, the CAM file with background 0.27, the dense transition matrix
squared logt times, bilinear upsampling, argmax) against ppcseg.refine.random_walk (random_walk_mask for the labels;
sparse_affinity, pooled_scores and walk for the walked scores), on generated images and CAMs of the sizes
docs/faithfulness.md lists (at most two of each). Both walk the affinities of the same AffinityNet head on the same fixed backbone outputs
(see affinity_setup.py; the official network is imported unchanged, CUDA calls made no-ops)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from affinity_setup import FixedTaps, both_networks, padded_input
from common import cuda_as_cpu, generated, load_file, parser, report, roots, statements_from_script

from ppcseg.config import load_params
from ppcseg.data.cams import to_tensor
from ppcseg.refine.affinity_net import sparse_affinity
from ppcseg.refine.random_walk import pooled_scores, random_walk_mask, walk

NEEDS = ["wseg"]
ROOT = Path(__file__).resolve().parents[1]
SIZES = [(90, 125), (96, 96), (190, 250), (250, 190), (70, 77)]
MAX_IMAGES = 2 * len(SIZES)  # the dense official walk takes about a second an image on one core


@torch.inference_mode()
def main() -> int:
    p = parser(__doc__, NEEDS)
    args = p.parse_args()
    root = roots(args, NEEDS)["wseg"]
    cfg = load_params([str(ROOT / "params.yaml")])["random_walk"]
    # The official upsampling leaves align_corners unset (False, with a warning); its matrix uses a deprecated
    # sparse constructor.
    warnings.filterwarnings("ignore", message="Default upsampling behavior")
    warnings.filterwarnings("ignore", message="torch.sparse.SparseTensor")
    official, ours = both_networks(root)
    normalize = load_file(root / "network" / "resnet38d.py", "official_wseg_resnet38d").Normalize()
    imutils = load_file(root / "tool" / "imutils.py", "official_wseg_imutils")
    loop = statements_from_script(root / "aff_infer.py", "for iter, (name, img)", "for iter, (name, img)")
    written: dict[str, np.ndarray] = {}
    rel, differing, total, moved = 0.0, 0, 0, 0
    n = min(args.images, MAX_IMAGES)
    with tempfile.TemporaryDirectory() as tmp:
        run_args = argparse.Namespace(cam_dir=tmp, out_rw=tmp, beta=cfg["beta"], logt=cfg["logt"])
        for i, (image, _, classes, cams) in enumerate(generated(n, sizes=SIZES)):
            name = f"img{i}"
            # The CAM file as the official inference writes it: {class index 0..19: (H, W) map}.
            np.save(os.path.join(tmp, name + ".npy"), {int(c) - 1: cams[k] for k, c in enumerate(classes)})
            # The official dataset's transforms (Normalize, HWC_to_CHW) and the loader's batch of one.
            img = torch.from_numpy(imutils.HWC_to_CHW(normalize(image)))[None]
            FixedTaps.set_for(padded_input(to_tensor(image)[None]))
            namespace = {
                "tqdm": lambda it, total=None: it,
                "infer_data_loader": [([name], img)],
                "args": run_args,
                "model": official,
                "np": np,
                "os": os,
                "torch": torch,
                "F": F,
                "imageio": types.SimpleNamespace(imwrite=lambda path, arr: written.__setitem__(path, arr)),
            }
            with cuda_as_cpu():
                exec(loop, namespace)
            theirs_labels = written.pop(os.path.join(tmp, name + ".png"))
            h, w = image.shape[:2]
            theirs = namespace["cam_rw"][0, [0, *classes.tolist()], :h, :w]

            ours_labels = random_walk_mask(
                ours,
                image,
                classes,
                cams,
                beta=cfg["beta"],
                logt=cfg["logt"],
                bg_score=cfg["bg_score"],
                radius=cfg["radius"],
            )
            # The walked scores, upsampled, as random_walk_mask computes them before its argmax.
            x = padded_input(to_tensor(image)[None])
            features = ours(x)
            fh, fw = features.shape[-2:]
            matrix, _ = sparse_affinity(features, cfg["radius"], cfg["beta"])
            scores = pooled_scores(cams, cfg["bg_score"], tuple(x.shape[-2:]), (fh, fw))
            walked = walk(matrix, scores.reshape(scores.shape[0], -1), cfg["logt"]).reshape(1, -1, fh, fw)
            up = F.interpolate(walked, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, :, :h, :w]

            rel = max(rel, float((theirs - up).abs().max() / theirs.abs().max()))
            differing += int((theirs_labels != ours_labels).sum())
            total += ours_labels.size
            # How much the walk does here: pixels whose label differs from the un-walked argmax.
            unwalked = np.concatenate([[0], classes])[
                np.argmax(np.concatenate([np.full((1, h, w), cfg["bg_score"], np.float32), cams]), axis=0)
            ]
            moved += int((unwalked != ours_labels).sum())
    sizes = ", ".join(f"{h}x{w}" for h, w in SIZES)
    return (
        0
        if report(
            f"wseg aff_infer.py walk vs random_walk_mask / walk, {n} images ({sizes}), "
            f"beta {cfg['beta']}, logt {cfg['logt']}",
            f"walked scores agree to {rel:.2g} (relative to the largest score), {differing} of {total} label pixels "
            f"differ (the walk changes {moved} labels from the un-walked argmax)",
            "walked scores agree to 2.5e-5 (relative); label maps identical (0 differing pixels)",
            rel <= 2.5e-5 and differing == 0,
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
