"""Per-image stages split into shards (execution.shards): the demo's wall time on the test Slurm cluster with K = 1 and
K = 2, and the projected wall time of each per-image stage on VOC at K = 1, 8 and 32 workers.

    python benchmarks/bench_shards.py                    # start the test cluster (root, slurm-wlm), time both, project
    python benchmarks/bench_shards.py --projection-only  # only the projection (no cluster)

The demo runs in a scratch copy per K through `snakemake --profile slurm` on the one-node cluster of the Slurm tests
(tests/slurm/cluster.py: this machine's cores and one placeholder GPU, so GPU jobs run one at a time there). The
projection takes each stage's per-image cost from the README's "What a real run costs" table, measured on this 2-core
CPU (no GPU was measured): wall = ceil(images / K) x cost per image, i.e. K workers as fast as that CPU, the merge's
hard links and the Slurm queueing left out. On GPUs the costs are lower; the ratios between K hold as long as each
shard has a worker of its own.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hardware import hardware

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2", "--max-threads", "2"]
VOC_TRAIN_AUG = 10_582
# stage -> CPU seconds per image, README "What a real run costs" (bench_stage_costs.py on the 2-core CPU).
COST_PER_IMAGE = {"infer_cam": 88.8, "affinity_labels": 3.2, "random_walk": 7.6, "crf_masks": 0.38}
WORKERS = (1, 8, 32)


def projection() -> None:
    print("projected wall time of each per-image stage on VOC train_aug (10 582 images), CPU-measured cost per image:")
    print(f"{'stage':<16} {'s / image':>9} " + " ".join(f"{f'K = {k}':>10}" for k in WORKERS))
    for stage, cost in COST_PER_IMAGE.items():
        hours = [math.ceil(VOC_TRAIN_AUG / k) * cost / 3600 for k in WORKERS]
        print(f"{stage:<16} {cost:>9.2f} " + " ".join(f"{h:>9.2f}h" for h in hours))


def demo_on_slurm(cluster, shards: int, dest: Path) -> float:
    from tests.workflow.helpers import scratch_repo, tool_env

    repo = scratch_repo(dest)
    (repo / "shards.yaml").write_text(f"execution:\n  shards: {shards}\n")
    cmd = [str(BIN / "snakemake"), "--profile", "slurm", "results/voc_miou.csv", "--configfile", "config/demo.yaml"]
    start = time.monotonic()
    proc = subprocess.run(
        [*cmd, "shards.yaml", *FAST], cwd=repo, env=dict(tool_env(), **cluster.env), capture_output=True, text=True
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"K = {shards}: snakemake exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projection-only", action="store_true", help="print only the VOC projection")
    args = parser.parse_args()
    print(f"hardware: {hardware()}")
    if not args.projection_only:
        sys.path.insert(0, str(REPO))
        from tests.slurm.cluster import LocalSlurm

        root = Path("/tmp") / f"ppcseg-bench-slurm-{os.getpid()}"  # Slurm's socket paths must stay short
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        cluster = LocalSlurm(root)
        try:
            cluster.start()
            with tempfile.TemporaryDirectory() as scratch:
                times = {k: demo_on_slurm(cluster, k, Path(scratch) / f"k{k}") for k in (1, 2)}
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
        print(f"demo on the test Slurm cluster ({cluster.cpus} CPUs, 1 placeholder GPU):")
        print(f"  K = 1: {times[1]:.0f} s   K = 2: {times[2]:.0f} s   ratio K2 / K1: {times[2] / times[1]:.2f}")
    projection()


if __name__ == "__main__":
    main()
