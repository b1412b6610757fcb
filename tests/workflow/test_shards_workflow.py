"""execution.shards in the workflow: K shard jobs and a merge per per-image stage, no merge at K = 1, and a finished
run stays finished when K changes (Snakemake's dry run plans nothing), while lost files and changed settings still
re-run the shard jobs and the merge."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.workflow.helpers import DEMO, DEMO_TARGETS, REPO, snakemake, snakemake_jobs

pytestmark = pytest.mark.workflow
PER_IMAGE = ("infer_cam", "affinity_labels", "random_walk")  # the demo's (SEAM route) per-image stages


def planned_jobs(repo: Path, *overlays: str, forceall: bool = False) -> Counter:
    """rule -> number of jobs that `snakemake -n` plans for the demo."""
    args = ["-n", *(["--forceall"] if forceall else []), *DEMO, *overlays]
    return Counter(job["rule"] for job in snakemake_jobs(snakemake(repo, *DEMO_TARGETS, *args).stdout))


def overlay(repo: Path, name: str, values: dict) -> str:
    (repo / name).write_text(yaml.safe_dump(values))
    return name


def test_two_shards_make_two_jobs_and_a_merge_per_stage_and_run(tmp_path):
    k2 = str(tmp_path / "k2.yaml")
    Path(k2).write_text(yaml.safe_dump({"runs": [0, 1], "execution": {"shards": 2}}))
    jobs = planned_jobs(REPO, k2, forceall=True)
    for stage in PER_IMAGE:
        assert jobs[stage] == 4 and jobs[f"{stage}_merge"] == 2, jobs  # 2 runs x 2 shards, one merge per run
    assert jobs["train_cam"] == 2 and jobs["train_affinity"] == 2  # training is not sharded
    assert "crf_masks" not in jobs
    one = planned_jobs(REPO, forceall=True)
    assert not [rule for rule in one if rule.endswith("_merge")]
    assert all(one[stage] == 1 for stage in PER_IMAGE)


def _finished_copy(demo_run, dest: Path) -> Path:
    """A copy of the finished demo (K = 1) with modification times kept."""
    repo, _ = demo_run
    shutil.copytree(repo, dest, symlinks=True)
    return dest


def test_changing_k_leaves_a_finished_run_up_to_date(demo_run, tmp_path):
    repo = _finished_copy(demo_run, tmp_path / "repo")
    k2 = overlay(repo, "k2.yaml", {"execution": {"shards": 2}})
    k3 = overlay(repo, "k3.yaml", {"execution": {"shards": 3}})
    assert planned_jobs(repo, k2) == Counter()
    assert planned_jobs(repo, k3) == Counter()
    assert planned_jobs(repo) == Counter()  # and back to one job per stage
    # Taken over, the folder's record still holds the stage's settings: changing one re-runs shards and merge.
    scales = overlay(repo, "scales.yaml", {"infer_cam": {"scales": [1.0, 0.5]}})
    jobs = planned_jobs(repo, k2, scales)
    assert jobs["infer_cam"] == 2 and jobs["infer_cam_merge"] == 1 and "train_cam" not in jobs
    assert {"eval_seeds", "affinity_labels_merge", "random_walk_merge", "train_seg"} <= set(jobs)


def test_a_lost_file_reruns_the_shards_and_the_merge(demo_run, tmp_path):
    repo = _finished_copy(demo_run, tmp_path / "repo")
    k2 = overlay(repo, "k2.yaml", {"execution": {"shards": 2}})
    next((repo / "work/runs/0/masks/random_walk").glob("*.png")).unlink()
    jobs = planned_jobs(repo, k2)
    assert jobs["random_walk"] == 2 and jobs["random_walk_merge"] == 1
    assert {"eval_masks", "train_seg", "eval_seg"} <= set(jobs)
    assert not {"infer_cam", "infer_cam_merge", "train_affinity"} & set(jobs)
