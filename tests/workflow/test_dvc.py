"""DVC end to end on the demo data: repro, metrics, a param change, experiments, push, and a pull that recomputes
nothing in Snakemake either."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, planned_rules, run, scratch_repo, snakemake

pytestmark = pytest.mark.workflow
DEMO_PARAMS = ["--params", "params.yaml", "--params", "config/demo.yaml"]


def dvc(repo, *args, **kwargs):
    return run([str(BIN / "dvc"), *args], repo, **kwargs)


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    """A scratch clone with the demo dvc.yaml, reproduced once, with a local-folder remote."""
    base = tmp_path_factory.mktemp("dvc")
    repo = scratch_repo(base / "repo")
    run([str(BIN / "ppcseg"), "export-dvc", *DEMO_PARAMS, "--out", "dvc.yaml"], repo)
    dvc(repo, "remote", "modify", "storage", "url", str(base / "remote"))
    dvc(repo, "repro", timeout=HANG_GUARD_S)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "demo run"], repo)
    return repo


def test_repro_produces_results_and_metrics(dvc_repo):
    assert (dvc_repo / "results/voc_miou.csv").is_file()
    metrics = json.loads(dvc(dvc_repo, "metrics", "show", "--json").stdout)
    assert "results/metrics.json" in json.dumps(metrics)
    status = dvc(dvc_repo, "status", "--quiet", check=False)
    assert status.returncode == 0, status.stdout


def test_ppc_param_change_reruns_train_cam_and_downstream_only(dvc_repo):
    params = dvc_repo / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("sampling: random", "sampling: first", 1))
        stages = set(json.loads(dvc(dvc_repo, "status", "--json").stdout))
        # DVC lists the stage whose params changed; what follows it re-runs when its outputs change.
        assert "train_cam_0" in stages  # the stage of run 0 (DVC stages carry the run)
        assert not stages & {"make_synthetic_voc", "pretrain_backbone"}
    finally:
        params.write_text(original)


def test_fresh_clone_pull_recomputes_nothing(dvc_repo, tmp_path):
    dvc(dvc_repo, "push")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(dvc_repo), str(clone)], tmp_path)
    shutil.rmtree(clone / "results", ignore_errors=True)
    run(["git", "checkout", "--", "results"], clone)
    dvc(clone, "pull")
    # Snakemake goes by modification times: once DVC has verified the hashes, touch outputs in DAG order.
    dvc(clone, "status", "--quiet")
    snakemake(clone, "--touch", "--cores", "1", "--configfile", "config/demo.yaml")
    assert planned_rules(clone, "--cores", "1", "--configfile", "config/demo.yaml") == set()


def _experiments(shown):
    """(name, data) of every experiment in `dvc exp show --json` output (not the workspace or the baseline)."""
    for row in shown:
        for group in row.get("experiments") or []:
            for rev in group.get("revs") or []:
                yield rev.get("name") or group.get("name"), rev.get("data") or {}


@pytest.mark.slow
def test_experiment_with_a_changed_param(dvc_repo):
    """`dvc exp run -S` re-runs from train_cam with the new value and records the experiment."""
    proc = dvc(dvc_repo, "exp", "run", "-S", "cam.ppc_loss.sampling=first", timeout=HANG_GUARD_S)
    ran = set(re.findall(r"Running stage '([^']+)'", proc.stdout))
    assert "train_cam_0" in ran and "report" in ran, proc.stdout
    assert not ran & {"make_synthetic_voc", "pretrain_backbone"}, proc.stdout
    experiments = list(_experiments(json.loads(dvc(dvc_repo, "exp", "show", "--json").stdout)))
    recorded = [
        (name, data)
        for name, data in experiments
        if data.get("params", {})
        .get("params.yaml", {})
        .get("data", {})
        .get("cam", {})
        .get("ppc_loss", {})
        .get("sampling")
        == "first"
    ]
    assert len(recorded) == 1, experiments
    assert "results/metrics.json" in recorded[0][1].get("metrics", {}), recorded
    # A re-run stage must train on its new inputs, not resume the baseline's finished run from its work folder.
    # ("Auto resumed from the latest checkpoint None." is mmengine's line for a fresh start; this one means a resume.)
    stale_resume = "resumed epoch:" in (dvc_repo / "logs/runs/0/train_seg.log").read_text()
    # Leave the workspace as the other tests of the module expect it: the baseline's params and outputs.
    dvc(dvc_repo, "exp", "apply", "HEAD")
    assert "sampling: random" in (dvc_repo / "params.yaml").read_text()
    status = dvc(dvc_repo, "status", "--quiet", check=False)
    assert status.returncode == 0, status.stdout
    # Fixed: train-seg's run fingerprint covers the pseudo-masks' files (names, sizes, mtimes), not only their path.
    assert not stale_resume, "train_seg resumed the baseline's finished run although its pseudo-masks changed"


@pytest.mark.slow
def test_route_switch_with_dvc(dvc_repo):
    """Switching the demo to EPS in params.yaml: `dvc repro` on the old dvc.yaml stops with the regeneration command;
    after `ppcseg export-dvc` it re-runs train_cam and after (CRF masks instead of the random walk), nothing upstream."""
    params = dvc_repo / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("  method: seam ", "  method: eps  ", 1))
        refused = dvc(dvc_repo, "repro", check=False, timeout=HANG_GUARD_S)
        assert refused.returncode != 0
        output = refused.stdout + refused.stderr
        assert "generated for another pipeline" in output and "missing stages ['crf_masks_0']" in output, output
        assert "ppcseg export-dvc --params params.yaml --params config/demo.yaml --out dvc.yaml" in output
        run([str(BIN / "ppcseg"), "export-dvc", *DEMO_PARAMS, "--out", "dvc.yaml"], dvc_repo)
        proc = dvc(dvc_repo, "repro", timeout=HANG_GUARD_S)
        ran = set(re.findall(r"Running stage '([^']+)'", proc.stdout))
        assert {"train_cam_0", "infer_cam_0", "crf_masks_0", "eval_masks_0", "train_seg_0", "collect_results"} <= ran, (
            ran
        )
        assert not ran & {"make_synthetic_voc", "pretrain_backbone", "affinity_labels_0", "random_walk_0"}, ran
        rows = (dvc_repo / "results/voc_miou.csv").read_text()
        assert "masks=crf" in rows
        assert dvc(dvc_repo, "status", "--quiet", check=False).returncode == 0
    finally:
        # Back to the baseline for the other tests of the module: its params, dvc.yaml, dvc.lock and outputs.
        run(["git", "checkout", "--", "."], dvc_repo)
        dvc(dvc_repo, "checkout", "--force")
    assert dvc(dvc_repo, "status", "--quiet", check=False).returncode == 0
