"""AffinityNet affinities: the official Net.forward(x, to_dense=True) (wseg network/resnet38_aff.py, imported
unchanged; its ResNet-38 base replaced by a stand-in that hands back fixed backbone outputs, CUDA calls made no-ops,
see affinity_setup.py) against ppcseg.refine.affinity_net (AffinityNet, sparse_affinity with beta 1, made dense), with
the same head weights and backbone outputs, on generated images whose stride-8 maps have the sizes below."""

from __future__ import annotations

import sys
import warnings

import torch
from affinity_setup import FixedTaps, both_networks
from common import cuda_as_cpu, generated, parser, report, roots

from ppcseg.data.cams import to_tensor
from ppcseg.refine.affinity_net import sparse_affinity

NEEDS = ["wseg"]
# Stride-8 map sizes: 56x56 takes the official network's precomputed pairs, 47x63 is a 375x500 VOC image, the small
# ones take the official small-map radius.
MAPS = [(12, 12), (47, 63), (63, 47), (56, 56), (11, 20), (7, 7), (6, 13)]
RADIUS = 5


@torch.inference_mode()
def main() -> int:
    args = parser(__doc__, NEEDS).parse_args()
    root = roots(args, NEEDS)["wseg"]
    official, ours = both_networks(root)
    sizes = [(h * 8, w * 8) for h, w in MAPS]
    # The official to_dense path builds its matrix with the deprecated sparse.FloatTensor constructor.
    warnings.filterwarnings("ignore", message="torch.sparse.SparseTensor")
    worst, low, high, n = 0.0, 1.0, 0.0, min(args.images, len(MAPS))
    for image, _, _, _ in generated(n, sizes=sizes):
        x = to_tensor(image)[None]
        FixedTaps.set_for(x)
        with cuda_as_cpu():
            theirs = official.forward(x, True)
        matrix, _ = sparse_affinity(ours(x), RADIUS, 1.0)
        worst = max(worst, float((theirs - matrix.to_dense()).abs().max()))
        pairs = theirs[torch.triu(torch.ones_like(theirs, dtype=torch.bool), 1) & (theirs > 0)]
        low, high = min(low, float(pairs.min())), max(high, float(pairs.max()))
    maps = ", ".join(f"{h}x{w}" for h, w in MAPS[:n])
    return (
        0
        if report(
            f"wseg resnet38_aff.py Net.forward(to_dense=True) vs AffinityNet + sparse_affinity, maps {maps}",
            f"max difference {worst:g} (pair affinities {low:.3g} to {high:.3g})",
            "identical dense matrices (max difference 0) with the same weights and backbone outputs",
            worst == 0.0,
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
