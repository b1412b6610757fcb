"""execution.shards in the workflow: K shard jobs and a merge per per-image stage, no merge at K = 1; changing K
re-runs the per-image stages (independent jobs, the scatter-gather pattern), and a finished folder that lost files
is refused before any job runs, naming the `--forcerun` that rebuilds it."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.workflow.helpers import DEMO, planning_copy, snakemake, snakemake_jobs

pytestmark = pytest.mark.workflow
PER_IMAGE = ("infer_cam", "affinity_labels", "random_walk")  # the demo's (SEAM route) per-image stages


def planned_jobs(repo: Path, *args: str, forceall: bool = False) -> Counter:
    """rule -> number of jobs that `snakemake -n` plans for the demo (the default target's `all` left out)."""
    args = ["-n", *(["--forceall"] if forceall else []), *DEMO, *args]
    jobs = Counter(job["rule"] for job in snakemake_jobs(snakemake(repo, *args).stdout))
    del jobs["all"]
    return jobs


def overlay(repo: Path, name: str, values: dict) -> str:
    (repo / name).write_text(yaml.safe_dump(values))
    return name


def test_two_shards_make_two_jobs_and_a_merge_per_stage_and_run(tmp_path):
    k2 = str(tmp_path / "k2.yaml")
    Path(k2).write_text(yaml.safe_dump({"runs": [0, 1], "execution": {"shards": 2}}))
    jobs = planned_jobs(planning_copy(), k2, forceall=True)
    for stage in PER_IMAGE:
        assert jobs[stage] == 4 and jobs[f"{stage}_merge"] == 2, jobs  # 2 runs x 2 shards, one merge per run
    assert jobs["train_cam"] == 2 and jobs["train_affinity"] == 2  # training is not sharded
    assert "crf_masks" not in jobs
    one = planned_jobs(planning_copy(), forceall=True)
    assert not [rule for rule in one if rule.endswith("_merge")]
    assert all(one[stage] == 1 for stage in PER_IMAGE)


def _finished_copy(demo_run, dest: Path) -> Path:
    """A copy of the finished demo (K = 1) with modification times kept."""
    repo, _ = demo_run
    shutil.copytree(repo, dest, symlinks=True)
    return dest


def test_changing_k_reruns_the_per_image_stages_and_back(demo_run, tmp_path):
    repo = _finished_copy(demo_run, tmp_path / "repo")
    assert planned_jobs(repo) == Counter()
    k2 = overlay(repo, "k2.yaml", {"execution": {"shards": 2}})
    jobs = planned_jobs(repo, k2)
    for stage in PER_IMAGE:
        assert jobs[stage] == 2 and jobs[f"{stage}_merge"] == 1, jobs
    assert "train_cam" not in jobs and {"eval_seeds", "train_seg"} <= set(jobs)
    assert planned_jobs(repo) == Counter()  # planning K = 2 changed nothing: K = 1 is still finished


def test_a_lost_file_is_refused_naming_the_forcerun_that_rebuilds_it(demo_run, tmp_path):
    repo = _finished_copy(demo_run, tmp_path / "repo")
    lost = next((repo / "work/runs/0/masks/random_walk").glob("*.png"))
    lost.unlink()
    proc = snakemake(repo, "-n", *DEMO, check=False)
    assert proc.returncode != 0
    message = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if "of its listing are gone" in line]
    assert message == [
        f"work/runs/0/masks/random_walk: 1 file(s) of its listing are gone, e.g. {lost.name}; "
        "rebuild it with `--forcerun random_walk`"
    ]
    jobs = planned_jobs(repo, "--forcerun", "random_walk")
    assert {"random_walk", "eval_masks", "train_seg", "eval_seg"} <= set(jobs)
    assert not {"infer_cam", "train_affinity"} & set(jobs)
    k2 = overlay(repo, "k2.yaml", {"execution": {"shards": 2}})
    proc = snakemake(repo, "-n", *DEMO, k2, check=False)  # with K = 2 its merge job writes the folder
    assert "rebuild it with `--forcerun random_walk_merge`" in proc.stdout + proc.stderr
