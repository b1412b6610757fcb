"""A stage given a released checkpoint (`<stage>.released`) is not trained: download + conversion replace it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.workflow.helpers import dry_run_rules

pytestmark = pytest.mark.workflow

SHA = "0" * 64


def overlay(tmp_path: Path, **released: str) -> str:
    path = tmp_path / "released.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                stage: {"released": {"url": f"https://example.org/{stage}.pth", "sha256": SHA, "layout": layout}}
                for stage, layout in released.items()
            }
        )
    )
    return str(path)


def test_released_cam_network_replaces_train_cam(tmp_path):
    rules = dry_run_rules(overlay(tmp_path, cam="wseg-contrast"))
    assert {"download_released_cam", "convert_released_cam", "infer_cam", "eval_seeds"} <= rules
    assert "train_cam" not in rules
    # the AffinityNet and the DeepLab still train (from ImageNet weights) on the released network's CAMs
    assert {"train_affinity", "train_seg", "download_resnet38"} <= rules


def test_every_stage_released_trains_nothing(tmp_path):
    rules = dry_run_rules(
        overlay(tmp_path, cam="wseg-contrast", affinity="wseg-affinity", segmentation="wseg-deeplabv1-resnet38")
    )
    assert {
        f"{step}_released_{s}" for step in ("download", "convert") for s in ("cam", "affinity", "segmentation")
    } <= (rules)
    assert {"infer_cam", "eval_seeds", "random_walk", "eval_masks", "eval_seg", "collect_results"} <= rules
    assert not {"train_cam", "affinity_labels", "train_affinity", "train_seg", "download_resnet38"} & rules
