"""Switching route (SEAM + PPC, SEAM, EPS + PPC, EPS) is a params change that Snakemake and DVC honour: the DAG, the
DVC stages and, in the slow test, the demo switched through every route."""

from __future__ import annotations

import csv
import shutil

import pytest
import yaml

from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import (
    BIN,
    DEMO,
    REPO,
    dry_run_rules,
    run,
    scratch_repo,
    snakemake,
    snakemake_jobs,
)

pytestmark = pytest.mark.workflow
SEAM_MASKS = {"affinity_labels", "train_affinity", "random_walk"}


@pytest.mark.parametrize(
    "overlay,masks,absent",
    [
        ("config/routes/seam.yaml", SEAM_MASKS, {"crf_masks", "download_saliency", "download_resnet101"}),
        ("config/routes/eps_ppc.yaml", {"crf_masks", "download_saliency", "download_resnet101"}, SEAM_MASKS),
        ("config/routes/eps.yaml", {"crf_masks", "prepare_saliency"}, SEAM_MASKS),
    ],
)
def test_paper_routes_have_their_own_dag(overlay, masks, absent):
    rules = dry_run_rules(overlay)
    assert {"download_voc", "train_cam", "infer_cam", "eval_seeds", "eval_masks", "train_seg"} <= rules
    assert masks <= rules and not absent & rules


def test_demo_eps_ppc_route_dag():
    rules = dry_run_rules("config/demo.yaml", "config/demo_eps_ppc.yaml")
    assert {"make_synthetic_voc", "pretrain_backbone", "train_cam", "crf_masks", "train_seg"} <= rules
    assert not SEAM_MASKS & rules and "prepare_saliency" not in rules  # the generator writes the saliency maps


def test_switching_a_finished_demo_to_eps_ppc_reruns_from_train_cam(demo_run, tmp_path):
    """The overlay changes train_cam's settings: it and what follows re-run; data and pretraining are kept (adding an
    overlay to the params files must not by itself re-run every job)."""
    # A copy (modification times kept): planning the EPS route marks the SEAM masks' consumers for rebuild, which
    # would leak into the other tests of the shared finished demo.
    repo = tmp_path / "repo"
    shutil.copytree(demo_run[0], repo, symlinks=True)
    assert dry_run_rules("config/demo.yaml", repo=repo, forceall=False) == set()
    rules = dry_run_rules("config/demo.yaml", "config/demo_eps_ppc.yaml", repo=repo, forceall=False)
    assert {"train_cam", "infer_cam", "crf_masks", "eval_masks", "train_seg", "collect_results"} <= rules
    assert not rules & {"make_synthetic_voc", "pretrain_backbone", *SEAM_MASKS}


def test_export_dvc_follows_the_route(tmp_path):
    out = tmp_path / "dvc.yaml"
    overlay = "config/routes/eps_ppc.yaml"
    run([str(BIN / "ppcseg"), "export-dvc", "--params", "params.yaml", "--params", overlay, "--out", str(out)], REPO)
    stages = yaml.safe_load(out.read_text())["stages"]
    # DVC stages of a run's rules are named <rule>_<run>; the default runs: [0]
    assert "crf_masks_0" in stages and not {f"{rule}_0" for rule in SEAM_MASKS} & set(stages)
    # The overlay's keys are DVC params of the stages that read them, so editing the overlay re-runs them.
    train_cam_params = stages["train_cam_0"]["params"]
    assert [p for p in train_cam_params if isinstance(p, dict)] == [{overlay: ["cam"]}]
    assert "--saliency" in stages["train_cam_0"]["cmd"]


def read_results(repo):
    with open(repo / "results/voc_miou.csv") as f:
        return {row["stage"]: row for row in csv.DictReader(f)}


# The demo on each route in turn, as a user switches: params overlays only. Paper-scale keys of config/routes/*.yaml
# (resize_long, max_steps, the R101 config) do not fit the demo; the switches are cam.method / cam.ppc and the head.
DEMO_ROUTES = {
    "seam": {"cam": {"method": "seam", "ppc": False, "view2_scale": 0.3}},
    "eps": {
        "cam": {"method": "eps", "ppc": False},
        "segmentation": {"config": "deeplabv2_tiny_1xb4-500_voc12pseudo-96x96.py"},
    },
    "eps_ppc": yaml.safe_load((REPO / "config/demo_eps_ppc.yaml").read_text()),
}


@pytest.mark.slow
def test_demo_switches_through_every_route(tmp_path):
    """SEAM + PPC, then SEAM, EPS and EPS + PPC on the same scratch repo: each switch re-runs CAM training and what
    follows (never the data or the backbone pretraining), with the route's masks and losses."""
    repo = scratch_repo(tmp_path / "repo")
    snakemake(repo, "--cores", "2", *DEMO, timeout=HANG_GUARD_S)
    results = {"seam_ppc": read_results(repo)}
    for route, overlay in DEMO_ROUTES.items():
        (repo / f"route_{route}.yaml").write_text(yaml.safe_dump(overlay))
        configs = ["config/demo.yaml", f"route_{route}.yaml"]
        proc = snakemake(repo, "--cores", "2", "--configfile", *configs, timeout=HANG_GUARD_S)
        ran = {job["rule"] for job in snakemake_jobs(proc.stdout + proc.stderr)}
        assert "train_cam" in ran and not ran & {"make_synthetic_voc", "pretrain_backbone"}, (route, ran)
        rows = results[route] = read_results(repo)
        assert {"seed", "mask", "segmentation", "segmentation-msf-crf"} <= set(rows)
        masks = "crf" if overlay["cam"]["method"] == "eps" else "random_walk"
        assert f"masks={masks}" in rows["mask"]["settings"], rows["mask"]["settings"]
        assert float(rows["segmentation"]["mIoU"]) > 100 / 21
        header = (repo / "results/runs/0/train_cam_loss.csv").read_text().splitlines()[0].split(",")
        assert any("sal" in c for c in header) == (overlay["cam"]["method"] == "eps"), header
        assert any("cross" in c or "intra" in c for c in header) == overlay["cam"]["ppc"], header
    for route, rows in results.items():
        print(route, {stage: rows[stage]["mIoU"] for stage in rows})
