"""The whole demo pipeline through real Snakemake: results, no-op re-run, parameter validation, lint, DVC sync."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ppcseg.data.voc import CLASSES, load_mask, read_ids, voc_dirs
from ppcseg.evaluation.miou import ConfusionMatrix
from tests.workflow.helpers import (
    BIN,
    DEMO,
    REPO,
    dry_run_rules,
    planned_rules,
    planning_copy,
    run,
    scratch_repo,
    snakemake,
    snakemake_jobs,
)

pytestmark = pytest.mark.workflow


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as handle:
        return {row["stage"]: row for row in csv.DictReader(handle)}


def constant_background_miou(root: Path, split: str) -> float:
    matrix = ConfusionMatrix()
    for image_id in read_ids(root, split):
        gt = load_mask(voc_dirs(root)["masks"] / f"{image_id}.png")
        matrix.update(gt, np.zeros_like(gt))
    return 100 * matrix.miou()


def test_results_table(demo_run):
    repo, _ = demo_run
    rows = read_rows(repo / "results/voc_miou.csv")
    assert set(rows) == {"seed", "mask", "segmentation", "segmentation-msf-crf"}
    for row in rows.values():
        assert all(name in row for name in CLASSES)
        assert 0 <= float(row["mIoU"]) <= 100
        assert int(row["n_images"]) > 0
    root = repo / "data/synthetic/VOCdevkit/VOC2012"
    baseline = constant_background_miou(root, "train")
    assert float(rows["seed"]["mIoU"]) > baseline + 10, (rows["seed"]["mIoU"], baseline)
    # As on VOC, the AffinityNet random walk improves on the seeds it starts from (issue 5). The values depend on the
    # CPU and its numerics settings (docs/demo.md), so only orderings with margins are checked: masks were 7.7 to 12.0
    # mIoU above the seeds on every CPU and setting measured; 4 leaves room for others.
    assert float(rows["mask"]["mIoU"]) > float(rows["seed"]["mIoU"]) + 4, (rows["mask"]["mIoU"], rows["seed"]["mIoU"])
    assert float(rows["segmentation"]["mIoU"]) > constant_background_miou(root, "val") + 3
    assert (repo / "results/metrics.json").is_file()
    assert (repo / "results/report.html").stat().st_size > 10_000


def test_second_run_has_nothing_to_do(demo_run):
    repo, _ = demo_run
    proc = snakemake(repo, "--cores", "2", *DEMO)
    assert snakemake_jobs(proc.stdout + proc.stderr) == []


def test_changing_a_ppc_param_reruns_from_train_cam(demo_run):
    repo, _ = demo_run
    params = repo / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("sampling: random", "sampling: first", 1))
        rules = planned_rules(repo, *DEMO)
    finally:
        params.write_text(original)
    assert {"train_cam", "eval_seg"} <= rules
    assert not rules & {"make_synthetic_voc", "pretrain_backbone"}


def test_bad_params_fail_before_any_job(tmp_path):
    repo = scratch_repo(tmp_path / "repo")
    for text, key in [
        ("cam:\n  batch_size: -1\n", "cam.batch_size"),
        ("cam:\n  momentum_typo: 0.9\n", "cam.momentum_typo"),
        ("seeds:\n  bg_threshold: high\n", "seeds.bg_threshold"),
    ]:
        (repo / "bad.yaml").write_text(text)
        proc = snakemake(repo, "results/voc_miou.csv", "--cores", "1", "--configfile", "bad.yaml", check=False)
        assert proc.returncode != 0
        assert key in proc.stdout + proc.stderr
        assert not (repo / "data").exists() and not (repo / "logs").exists()


def test_paper_dry_run_starts_from_downloads():
    rules = planned_rules(planning_copy(), "--forceall")
    assert {"download_voc", "download_sbd", "download_resnet38", "prepare_voc", "train_cam", "random_walk"} <= rules
    assert "make_synthetic_voc" not in rules


def test_demo_dry_run_starts_from_generated_data():
    rules = dry_run_rules("config/demo.yaml")
    assert "make_synthetic_voc" in rules and "download_voc" not in rules


def test_lint_and_format():
    run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules"], REPO)
    proc = snakemake(REPO, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dvc_yaml_matches_workflow(tmp_path):
    """dvc.yaml is generated from the Snakemake DAG; regenerating it must give the committed file."""
    out = tmp_path / "dvc.yaml"
    run([str(BIN / "ppcseg"), "export-dvc", "--out", str(out)], REPO)
    assert out.read_text() == (REPO / "dvc.yaml").read_text(), "dvc.yaml is stale: run `ppcseg export-dvc`"
