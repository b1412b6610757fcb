"""Stages run by DVC refuse a dvc.yaml generated for another pipeline than the params files describe (a route switch
without `ppcseg export-dvc`), naming the stages that differ and the command that regenerates it."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, run, scratch_repo

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
    assert "missing stages ['crf_masks']" in message
    assert "extra stages ['affinity_labels', 'random_walk', 'train_affinity']" in message
    assert f"ppcseg export-dvc {' '.join(EPS_DEMO_PARAMS)} --out dvc.yaml" in message
    assert "train.txt" not in proc.stderr  # refused before the stage's work
    assert (demo_dvc_repo / "dvc.yaml").read_text() == before


def test_a_hand_edited_stage_is_refused(demo_dvc_repo):
    dvc_yaml = demo_dvc_repo / "dvc.yaml"
    original = dvc_yaml.read_text()
    try:
        dvc_yaml.write_text(original.replace("ppcseg eval-masks", "ppcseg eval-masks --threads 3", 1))
        proc = stage_as_dvc_runs_it(demo_dvc_repo, DEMO_PARAMS)
        assert proc.returncode == 2 and "changed stages ['eval_masks']" in proc.stderr
    finally:
        dvc_yaml.write_text(original)
