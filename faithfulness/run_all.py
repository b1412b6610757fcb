"""Run every comparison with the official checkouts given, each in its own process; exit 1 if any differs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "compare_pairs.py",
    "compare_crf_labels.py",
    "compare_crf_masks.py",
    "compare_affinity.py",
    "compare_random_walk.py",
    "compare_pair_labels.py",
    "compare_crf_probs.py",
    "compare_test_protocol.py",
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--official-root", nargs="+", required=True, metavar="NAME=PATH", help="as each script takes it")
    p.add_argument("--images", type=int, default=40)
    args = p.parse_args()
    failed = []
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        cmd = [sys.executable, str(HERE / script), "--images", str(args.images), "--official-root", *args.official_root]
        if subprocess.run(cmd, cwd=HERE).returncode != 0:
            failed.append(script)
    print("all comparisons agree with docs/faithfulness.md" if not failed else f"differ or failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
