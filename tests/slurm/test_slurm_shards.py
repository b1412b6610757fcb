"""Two runs and two shards through `snakemake --profile slurm` on the test cluster: the runs' chains and the shards of
a per-image stage are queued side by side (squeue, polled while the workflow runs), and run 0 gives what the local
one-job demo gives, file for file."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.slurm.cluster import FAST_POLLING as FAST
from tests.slurm.cluster import start_or_skip
from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, scratch_repo, tool_env

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.slow]
PER_IMAGE = {"infer_cam", "affinity_labels", "random_walk"}


def queue(env: dict[str, str]) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job in the queue, pending or running, from the comment the Slurm plugin sets."""
    out = subprocess.run(["squeue", "-h", "-o", "%k"], env=env, capture_output=True, text=True).stdout
    jobs = set()
    for comment in out.split():
        rule, _, wildcards = comment.removeprefix("rule_").partition("_wildcards_")
        jobs.add((rule, wildcards))
    return jobs


def run_polling(repo: Path, env: dict[str, str], args: list[str]) -> tuple[subprocess.CompletedProcess, list[set]]:
    """Run Snakemake on the cluster, taking a squeue snapshot every half second until it exits."""
    cmd = [str(BIN / "snakemake"), "--profile", "slurm", *args, *FAST]
    snapshots = []
    with open(repo / "snakemake.out", "w") as out:
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + HANG_GUARD_S
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the Slurm run did not finish"
            snapshots.append(queue(env))
            time.sleep(0.5)
    log = (repo / "snakemake.out").read_text()
    return subprocess.CompletedProcess(cmd, proc.returncode, log, ""), snapshots


def rows(path: Path, run: str) -> dict[str, dict[str, str]]:
    with open(path) as handle:
        return {row["stage"]: row for row in csv.DictReader(handle) if row["run"] == run}


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_runs_and_shards_queue_side_by_side_and_match_the_local_run(demo_run, tmp_path_factory):
    root = Path("/tmp") / f"ppcseg-slurm-shards-{os.getpid()}"  # Slurm's socket paths must stay short
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    cluster = start_or_skip(root)
    try:
        repo = scratch_repo(tmp_path_factory.mktemp("slurm-shards"))
        (repo / "wide.yaml").write_text(yaml.safe_dump({"runs": [0, 1], "execution": {"shards": 2}}))
        start = time.monotonic()
        proc, snapshots = run_polling(
            repo,
            dict(tool_env(), **cluster.env),
            ["results/voc_miou.csv", "--configfile", "config/demo.yaml", "wide.yaml"],
        )
        print(f"slurm demo, 2 runs x 2 shards: {time.monotonic() - start:.0f} s, {len(snapshots)} squeue snapshots")
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert any({("train_cam", "0"), ("train_cam", "1")} <= jobs for jobs in snapshots), "runs never queued together"
    together = set()
    for jobs in snapshots:
        shards = defaultdict(set)
        for rule, wildcards in jobs:
            if rule in PER_IMAGE:
                run, _, shard = wildcards.partition("_")
                shards[(rule, run)].add(shard)
        together |= {key for key, found in shards.items() if found == {"1", "2"}}
    assert together, "no per-image stage had both shards in the queue at once"
    print(f"both shards queued together: {sorted(together)}")

    local, _ = demo_run
    assert rows(repo / "results/voc_miou.csv", "0") == rows(local / "results/voc_miou.csv", "0")
    for folder in ("work/runs/0/cam/cams", "work/runs/0/affinity/labels", "work/runs/0/masks/random_walk"):
        assert files(repo / folder) == files(local / folder), folder
    assert not list((repo / "work/runs/0/cam").glob("cams.shard-*"))  # the shard folders were temporary
    assert set(rows(repo / "results/voc_miou.csv", "median")) == set(rows(local / "results/voc_miou.csv", "0"))
