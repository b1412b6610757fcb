"""Experiments as branches of one DAG (params `experiments`, `compare`): each experiment x run is a branch, the shared
stages are made once, bad declarations are refused in one line before any job runs."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.workflow.helpers import BIN, DEMO, planning_copy, run, snakemake, snakemake_jobs

pytestmark = pytest.mark.workflow
COMPARE = [*DEMO, "config/demo_compare.yaml"]
BRANCH_RULES = {"train_cam", "infer_cam", "eval_seeds", "affinity_labels", "train_affinity", "random_walk"}
BRANCH_RULES |= {"eval_masks", "train_seg"}
SHARED_RULES = {"make_synthetic_voc", "pretrain_backbone", "collect_results", "compare_experiments", "report"}


def planned(*args: str, repo: Path | None = None) -> list[dict[str, str]]:
    return snakemake_jobs(snakemake(repo or planning_copy(), "-n", "--forceall", *args).stdout)


def test_each_experiment_and_run_is_a_branch_and_the_shared_stages_run_once(tmp_path):
    (tmp_path / "two_runs.yaml").write_text(yaml.safe_dump({"runs": [0, 1]}))
    jobs = planned(*COMPARE, str(tmp_path / "two_runs.yaml"))
    counts = Counter(job["rule"] for job in jobs)
    assert all(counts[rule] == 4 for rule in BRANCH_RULES), counts  # 2 experiments x 2 runs
    assert counts["eval_seg"] == 8  # and 2 protocols
    assert all(counts[rule] == 1 for rule in SHARED_RULES), counts
    outputs = {job["output"] for job in jobs if job["rule"] == "train_cam"}
    assert (
        "work/experiments/seam_ppc/runs/1/cam/checkpoint.pt, results/experiments/seam_ppc/runs/1/train_cam_loss.csv"
        in outputs
    )
    # one job per experiment and run
    train = [job for job in jobs if job["rule"] == "train_cam"]
    assert {"seam": 2, "seam_ppc": 2} == Counter(re.search(r"experiments/(\w+)/", job["output"])[1] for job in train)


def test_without_experiments_the_paths_stay_as_they_were():
    jobs = planned(*DEMO)
    assert {job["output"] for job in jobs if job["rule"] == "eval_masks"} == {
        "results/runs/0/metrics/mask.json, work/runs/0/confusion/mask.npz"
    }
    assert "compare_experiments" not in {job["rule"] for job in jobs}


def test_the_paper_table_lists_every_job_with_its_gpu_request():
    jobs = planned("--configfile", "config/paper_table.yaml")
    counts = Counter(job["rule"] for job in jobs)
    assert counts["train_cam"] == 12 and counts["eval_seg"] == 24  # 4 experiments x 3 runs
    assert counts["random_walk"] == 6 and counts["crf_masks"] == 6  # SEAM and EPS routes, 2 experiments each
    assert counts["prepare_voc"] == 1 and counts["prepare_saliency"] == 1 and counts["compare_experiments"] == 1
    gpu = {job["rule"] for job in jobs if "gpu=1" in job.get("resources", "")}
    assert gpu == {"train_cam", "infer_cam", "train_affinity", "random_walk", "train_seg", "eval_seg"}


def _refusal(tmp_path: Path, study: dict, overlays: dict[str, dict] | None = None) -> str:
    for name, values in (overlays or {}).items():
        (tmp_path / name).write_text(yaml.safe_dump(values))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    proc = snakemake(planning_copy(), "-n", *DEMO, str(tmp_path / "study.yaml"), check=False)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "invalid parameters" in line]
    assert len(lines) == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


def test_an_unknown_experiment_in_compare_is_refused(tmp_path):
    line = _refusal(tmp_path, {"experiments": {"a": [], "b": []}, "compare": [["a", "c"]]})
    assert "compare: 'c' is not an experiment (experiments: a, b)" in line


@pytest.mark.parametrize("name", ["../up", "a b", "-x", "été"])
def test_an_experiment_name_that_is_not_a_safe_folder_name_is_refused(tmp_path, name):
    line = _refusal(tmp_path, {"experiments": {name: []}})
    assert f"experiments: {name!r} is not a safe name" in line


def test_a_missing_overlay_is_refused(tmp_path):
    line = _refusal(tmp_path, {"experiments": {"a": ["config/nope.yaml"]}})
    assert "experiments.a: overlay config/nope.yaml not found" in line


def test_an_overlay_that_sets_a_shared_section_is_refused(tmp_path):
    overlay = str(tmp_path / "data.yaml")
    line = _refusal(tmp_path, {"experiments": {"a": [overlay]}}, {"data.yaml": {"data": {"root": "elsewhere"}}})
    assert f"experiments.a: {overlay} sets data, which every experiment shares" in line


def test_identical_experiments_are_warned_not_refused(tmp_path):
    (tmp_path / "twins.yaml").write_text(yaml.safe_dump({"experiments": {"a": [], "b": []}}))
    proc = snakemake(planning_copy(), "-n", *DEMO, str(tmp_path / "twins.yaml"))
    assert "experiments: a and b have identical settings" in proc.stdout + proc.stderr


def test_dvc_gets_a_stage_per_branch_job_with_its_experiments_params(tmp_path):
    out = tmp_path / "dvc.yaml"
    params = ["--params", "params.yaml", "--params", "config/demo.yaml", "--params", "config/demo_compare.yaml"]
    run([str(BIN / "ppcseg"), "export-dvc", *params, "--out", str(out)], planning_copy())
    stages = yaml.safe_load(out.read_text())["stages"]
    assert {"train_cam_seam_0", "train_cam_seam_ppc_0", "compare_experiments", "make_synthetic_voc"} <= set(stages)
    assert {"config/demo_seam.yaml": ["cam"]} in stages["train_cam_seam_0"]["params"]  # train-cam declares `cam`
    assert not any("config/demo_seam.yaml" in str(p) for p in stages["train_cam_seam_ppc_0"]["params"])
    assert "work/experiments/seam/runs/0/confusion/seed.npz" in stages["compare_experiments"]["deps"]
