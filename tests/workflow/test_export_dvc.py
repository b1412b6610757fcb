"""Stages run by DVC refuse a dvc.yaml generated for another pipeline than the params files describe (a route switch
without `ppcseg export-dvc`), naming the stages that differ and the command that regenerates it."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, REPO, run, scratch_repo

pytestmark = pytest.mark.workflow
DEMO_PARAMS = ["--params", "params.yaml", "--params", "config/demo.yaml"]
EPS_DEMO_PARAMS = [*DEMO_PARAMS, "--params", "config/demo_eps_ppc.yaml"]


@pytest.fixture(scope="module")
def demo_dvc_repo(tmp_path_factory):
    repo = scratch_repo(tmp_path_factory.mktemp("export_dvc") / "repo")
    run([str(BIN / "ppcseg"), "export-dvc", *DEMO_PARAMS, "--out", "dvc.yaml"], repo)
    return repo


def stage_as_dvc_runs_it(repo, params_args):
    """`ppcseg eval-masks` with DVC's environment; its inputs do not exist, so it fails at once after the check."""
    env = dict(os.environ, DVC_STAGE="eval_masks", DVC_ROOT=str(repo), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = ["ppcseg", "eval-masks", *params_args, "--data", "missing", "--masks", "missing", "--out-metrics", "m.json"]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)


def test_a_current_dvc_yaml_lets_the_stage_run(demo_dvc_repo):
    proc = stage_as_dvc_runs_it(demo_dvc_repo, DEMO_PARAMS)
    assert proc.returncode == 2
    assert "missing/ImageSets/Segmentation/train.txt" in proc.stderr  # the stage's own complaint: it ran
    assert (demo_dvc_repo / ".dvc/tmp/ppcseg-dvc-yaml-checked").is_file()


def test_a_route_switch_without_export_dvc_is_refused(demo_dvc_repo):
    before = (demo_dvc_repo / "dvc.yaml").read_text()
    proc = stage_as_dvc_runs_it(demo_dvc_repo, EPS_DEMO_PARAMS)
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()[-1]
    assert "dvc.yaml: generated for another pipeline" in message
    assert "missing stages ['crf_masks_0']" in message
    assert "extra stages ['affinity_labels_0', 'random_walk_0', 'train_affinity_0']" in message
    assert f"ppcseg export-dvc {' '.join(EPS_DEMO_PARAMS)} --out dvc.yaml" in message
    assert "train.txt" not in proc.stderr  # refused before the stage's work
    assert (demo_dvc_repo / "dvc.yaml").read_text() == before


def test_a_hand_edited_stage_is_refused(demo_dvc_repo):
    dvc_yaml = demo_dvc_repo / "dvc.yaml"
    original = dvc_yaml.read_text()
    try:
        dvc_yaml.write_text(original.replace("ppcseg eval-masks", "ppcseg eval-masks --threads 3", 1))
        proc = stage_as_dvc_runs_it(demo_dvc_repo, DEMO_PARAMS)
        assert proc.returncode == 2 and "changed stages ['eval_masks_0']" in proc.stderr
    finally:
        dvc_yaml.write_text(original)


def test_two_runs_give_per_run_stages_and_plots(tmp_path):
    """A 2-run overlay: every per-run stage twice (named by its run), data and pretraining once, curves per run."""
    import yaml

    from ppcseg.workflow.export_dvc import render

    (tmp_path / "runs.yaml").write_text("runs: [0, 1]\n")
    document = yaml.safe_load(render(REPO / "Snakefile", [*DEMO_PARAMS[1::2], str(tmp_path / "runs.yaml")]))
    stages = document["stages"]
    assert {"make_synthetic_voc", "pretrain_backbone", "collect_results", "report"} <= set(stages)
    for name in ["train_cam", "infer_cam", "eval_seeds", "train_affinity", "random_walk", "train_seg"]:
        assert f"{name}_0" in stages and f"{name}_1" in stages and name not in stages
    for name in ["train_cam", "train_affinity", "train_seg"]:
        assert "--seed 1 " in stages[f"{name}_1"]["cmd"] and "--seed 0 " in stages[f"{name}_0"]["cmd"]
    assert {"eval_seg_0_single", "eval_seg_1_msf-crf"} <= set(stages)
    assert {"results/runs/1/train_cam_loss.csv": {"cache": False}} in stages["train_cam_1"]["outs"]
    deps = stages["collect_results"]["deps"]
    assert "results/runs/0/metrics/seed.json" in deps and "results/runs/1/metrics/mask.json" in deps
    assert "results/runs/1/seed_threshold_curve.csv" in [next(iter(p)) for p in document["plots"]]
