"""AffinityNet pair labels and loss: the official ExtractAffinityLabelInRadius (wseg voc12/data.py, imported
unchanged) and the loss statements of aff_train.py's training loop (from `bg_label = ...` to `loss = ...`, taken from
the script's syntax tree and run unchanged, CUDA calls made no-ops) against ppcseg.refine.train_affinity pair_labels
and affinity_loss, on generated stride-8 label maps (classes, background 0, 255 on some boundary pixels and a padding
strip) of square crops, and random affinities in (0, 1), batches of equal-sized maps."""

from __future__ import annotations

import sys

import numpy as np
import torch
from common import cuda_as_cpu, generated, load_file, parser, report, roots, statements_from_script

from ppcseg.refine.affinity_net import pair_indices
from ppcseg.refine.train_affinity import affinity_loss, pair_labels

NEEDS = ["wseg"]
# Stride-8 sizes of square crops: 448 (params.yaml affinity.crop_size) and smaller ones; the official extractor
# always takes radius 5, so maps under 11 (where the official network shrinks its radius) are left out.
CROPS = [56, 12, 32, 41]
RADIUS = 5


def label_maps(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size) uint8 stride-8 label maps: generated discs sampled at stride 8, some pixels next to another
    label set to 255, and 255 on a strip of 0-3 rows at the bottom and 0-3 columns at the right (crop padding)."""
    rng = np.random.default_rng(seed)
    out = []
    for _, label, _, _ in generated(n, seed=seed, sizes=[(size * 8, size * 8)]):
        small = label[4::8, 4::8].astype(np.uint8)
        padded = np.pad(small, 1, mode="edge")
        edge = np.zeros_like(small, dtype=bool)
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            edge |= padded[dy : dy + size, dx : dx + size] != small
        small[edge & (rng.random(small.shape) < 0.5)] = 255
        small[size - int(rng.integers(0, 4)) :, :] = 255
        small[:, size - int(rng.integers(0, 4)) :] = 255
        out.append(small)
    return np.stack(out)


def main() -> int:
    args = parser(__doc__, NEEDS).parse_args()
    root = roots(args, NEEDS)["wseg"]
    data = load_file(root / "voc12" / "data.py", "official_wseg_voc12_data")
    loss_code = statements_from_script(root / "aff_train.py", "bg_label = pack[1][0]", "loss = bg_loss / 4")
    per_crop = max(1, args.images // len(CROPS))
    differing = pairs = 0
    counts = np.zeros(3, np.int64)
    worst = 0.0
    gen = torch.Generator().manual_seed(0)
    for k, size in enumerate(CROPS):
        maps = label_maps(per_crop, size, seed=k)
        extract = data.ExtractAffinityLabelInRadius(cropsize=size, radius=RADIUS)
        # The official dataset returns (34, P) per map; the loader stacks a batch.
        theirs = [torch.stack(t) for t in zip(*(extract(m) for m in maps), strict=True)]
        src, dst = pair_indices(RADIUS, size, size)
        ours = pair_labels(torch.from_numpy(maps), src, dst)
        for t, o in zip(theirs, ours, strict=True):
            differing += int((t.reshape(len(maps), -1) != o).sum())
        pairs += 3 * ours[0].numel()
        counts += [int(o.sum()) for o in ours]

        aff = torch.rand(theirs[0].shape, generator=gen) * 0.98 + 0.01
        namespace = {"torch": torch, "pack": (None, theirs), "aff": aff}
        with cuda_as_cpu():
            exec(loss_code, namespace)
        mine = affinity_loss(aff.reshape(len(maps), -1), *ours)
        for key in ("loss", "bg_loss", "fg_loss", "neg_loss"):
            worst = max(worst, float(abs(namespace[key] - mine[key]) / abs(namespace[key])))
    crops = ", ".join(f"{s}x{s}" for s in CROPS)
    ok = report(
        f"wseg ExtractAffinityLabelInRadius vs pair_labels, {per_crop * len(CROPS)} maps ({crops}), radius {RADIUS}",
        f"{differing} of {pairs} pair labels differ ({counts[0]} bg-positive, {counts[1]} fg-positive, "
        f"{counts[2]} negative pairs)",
        "identical bg-positive / fg-positive / negative pair labels",
        differing == 0,
    )
    ok &= report(
        f"wseg aff_train.py loss vs affinity_loss, {len(CROPS)} batches of {per_crop}",
        f"loss and its three terms agree to {worst:.2g} (relative)",
        "the same loss 1/4 bg + 1/4 fg + 1/2 neg with the same 1e-5 terms",
        worst <= 1e-6,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
