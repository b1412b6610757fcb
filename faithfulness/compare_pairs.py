"""AffinityNet pairs: the official get_indices_of_pairs (wseg, SEAM and PSA tool/pyutils.py) against
ppcseg.refine.affinity_net.pair_indices, on the map sizes docs/faithfulness.md lists."""

from __future__ import annotations

import sys

import numpy as np
from common import load_file, parser, report, roots

from ppcseg.refine.affinity_net import official_radius, pair_indices

NEEDS = ["wseg", "seam", "psa"]
SIZES = [(12, 12), (47, 63), (63, 47), (56, 56), (32, 45), (11, 20), (10, 30), (7, 7), (6, 13), (5, 9)]
RADIUS = 5


def main() -> int:
    args = parser(__doc__, NEEDS).parse_args()
    ok = True
    for name, root in roots(args, NEEDS).items():
        official = load_file(root / "tool" / "pyutils.py", f"official_{name}_pyutils")
        differing = []
        for h, w in SIZES:
            # The official AffinityNet shrinks the radius on small maps (official_radius); the pair function itself
            # takes the radius it is given.
            radius = official_radius(RADIUS, h, w)
            ind_from, ind_to = (np.asarray(a) for a in official.get_indices_of_pairs(radius, (h, w)))
            # The official function returns the start pixels once and the targets offset after offset; the network
            # pairs each start pixel with each offset's target (a broadcast), which is the flat list ours returns.
            theirs = (np.tile(ind_from, len(ind_to) // max(len(ind_from), 1)), ind_to)
            ours = pair_indices(RADIUS, h, w)
            same = all(np.array_equal(t, o.numpy()) for t, o in zip(theirs, ours, strict=True))
            if not same:
                differing.append(f"{h}x{w}")
        ok &= report(
            f"{name} get_indices_of_pairs vs pair_indices, radius {RADIUS}, {len(SIZES)} map sizes",
            f"{len(SIZES) - len(differing)} of {len(SIZES)} sizes identical (same pairs, same order)"
            + (f"; differ: {', '.join(differing)}" if differing else ""),
            "identical pair lists, in the same order",
            not differing,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
