"""The paper's comparison on the demo data (config/demo_compare.yaml: SEAM + PPC against the same network without the
contrast terms), run through Snakemake: results/comparison.csv checked against a hand computation from the per-image
confusion matrices, its interval, a swapped pair, an experiment against itself, and what adding a branch re-runs."""

from __future__ import annotations

import csv
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, DEMO, planned_rules, scratch_repo, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
COMPARE = [*DEMO, "config/demo_compare.yaml"]
STAGES = {"seed": "seed", "mask": "mask", "segmentation": "segmentation_single"}
STAGES["segmentation-msf-crf"] = "segmentation_msf-crf"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    repo = scratch_repo(tmp_path_factory.mktemp("comparison") / "repo")
    start = time.monotonic()
    snakemake(repo, "--cores", "2", *COMPARE, timeout=3 * HANG_GUARD_S)
    print(f"comparison demo: {time.monotonic() - start:.0f} s")
    return repo


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def hand_miou(confusion: np.ndarray) -> float:
    """mIoU (%) of per-image confusion matrices summed over the images, written out plainly: per class, true positives
    over ground truth + predictions - true positives; a last extra column counts unlabelled predictions (ground
    truth, no prediction); classes absent from both are left out."""
    total = confusion.sum(axis=0).astype(np.float64)
    classes = total.shape[0]
    ious = []
    for c in range(classes):
        tp = total[c, c]
        union = total[c, :].sum() + total[:classes, c].sum() - tp
        if union > 0:
            ious.append(tp / union)
    return 100 * float(np.mean(ious))


def confusion(repo: Path, experiment: str, stage: str) -> np.ndarray:
    with np.load(repo / f"work/experiments/{experiment}/runs/0/confusion/{STAGES[stage]}.npz") as data:
        return data["confusion"]


def test_the_table_equals_a_hand_computation_from_the_confusion_matrices(study):
    rows = {row["stage"]: row for row in read(study / "results/comparison.csv")}
    assert set(rows) == set(STAGES)
    for stage, row in rows.items():
        assert (row["baseline"], row["method"]) == ("seam", "seam_ppc")
        baseline, method = hand_miou(confusion(study, "seam", stage)), hand_miou(confusion(study, "seam_ppc", stage))
        assert float(row["baseline_median"]) == pytest.approx(baseline, abs=0.006)
        assert float(row["method_median"]) == pytest.approx(method, abs=0.006)
        assert float(row["diff_median"]) == pytest.approx(method - baseline, abs=0.011)
        assert float(row["diff_min"]) == float(row["diff_max"]) == float(row["diff_median"])  # one run
        assert float(row["ci_low"]) <= float(row["diff_median"]) <= float(row["ci_high"])
    assert rows["seed"]["paper_diff"] != ""  # SEAM seeds: the paper's 55.4 -> 61.5
    table = read(study / "results/voc_miou.csv")
    assert {row["experiment"] for row in table} == {"seam", "seam_ppc"}


def _compare(study: Path, out: Path, *pair: str) -> dict[str, dict[str, str]]:
    """compare-experiments by hand on the study's files, with another pair."""
    runs = []
    for experiment in ("seam", "seam_ppc"):
        files = []
        for name in STAGES.values():
            metrics = f"results/experiments/{experiment}/runs/0/metrics/{name}.json"
            files += [metrics, f"work/experiments/{experiment}/runs/0/confusion/{name}.npz"]
        runs += ["--run", experiment, "0", *files]
    params = ["--params", "params.yaml", *(a for f in COMPARE[1:] for a in ("--params", f))]
    cmd = [str(BIN / "ppcseg"), "compare-experiments", *params, *runs, "--pair", *pair, "--out", str(out)]
    subprocess.run(cmd, cwd=study, check=True, capture_output=True, timeout=HANG_GUARD_S)
    return {row["stage"]: row for row in read(out)}


def test_swapping_the_pair_flips_the_sign_and_itself_gives_zero(study, tmp_path):
    rows = {row["stage"]: row for row in read(study / "results/comparison.csv")}
    swapped = _compare(study, tmp_path / "swapped.csv", "seam_ppc", "seam")
    same = _compare(study, tmp_path / "same.csv", "seam", "seam")
    for stage, row in rows.items():
        assert float(swapped[stage]["diff_median"]) == -float(row["diff_median"])
        assert float(swapped[stage]["ci_low"]) == -float(row["ci_high"])
        assert float(swapped[stage]["ci_high"]) == -float(row["ci_low"])
        assert float(same[stage]["diff_median"]) == float(same[stage]["ci_low"]) == float(same[stage]["ci_high"]) == 0


def test_adding_an_experiment_or_a_run_plans_only_the_new_branches(study, tmp_path):
    repo = Path(shutil.copytree(study, tmp_path / "repo", symlinks=True))
    assert planned_rules(repo, *COMPARE) == set()
    shared = {"collect_results", "compare_experiments", "report"}
    (repo / "third.yaml").write_text(
        yaml.safe_dump({"experiments": {"seam": ["config/demo_seam.yaml"], "seam_ppc": [], "tau": ["tau.yaml"]}})
    )
    (repo / "tau.yaml").write_text(yaml.safe_dump({"cam": {"ppc_loss": {"sampling": "first"}}}))
    proc = snakemake(repo, "-n", *COMPARE, "third.yaml")
    jobs = [line for line in proc.stdout.splitlines() if line.strip().startswith("output:")]
    assert jobs and all("experiments/tau/" in line or "results/" in line for line in jobs), jobs
    assert not any("experiments/seam" in line for line in jobs)
    (repo / "two_runs.yaml").write_text(yaml.safe_dump({"runs": [0, 1]}))
    proc = snakemake(repo, "-n", *COMPARE, "two_runs.yaml")
    outputs = [line for line in proc.stdout.splitlines() if line.strip().startswith("output:")]
    assert not any("/runs/0/" in line for line in outputs), outputs
    assert shared <= planned_rules(repo, *COMPARE, "two_runs.yaml")
