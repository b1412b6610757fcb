"""eval-seg on a network trained on the tiny VOC folder: the metrics row under both test protocols, the per-image
confusion matrices, and the split it evaluates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ppcseg.cli import main
from ppcseg.data.voc import read_ids
from ppcseg.evaluation.miou import iou_from_confusion, mean_iou, read_confusions
from tests.segment.helpers import params_args


@pytest.mark.parametrize("protocol,stage", [("single", "segmentation"), ("msf-crf", "segmentation-msf-crf")])
def test_eval_cli(voc_root, params_files, trained, tmp_path, protocol, stage):
    out = tmp_path / "metrics.json"
    args = ["eval-seg", *params_args(params_files), "--data", str(voc_root), "--checkpoint", str(trained)]
    assert main([*args, "--protocol", protocol, "--out-metrics", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["stage"] == stage and row["split"] == "val" and row["n_images"] == len(read_ids(voc_root, "val"))
    assert 0 <= row["mIoU"] <= 100 and row["iou"]["background"] is not None
    assert row["settings"]["crf"] is (protocol == "msf-crf")
    if protocol == "msf-crf":
        assert row["settings"]["scales"] == [0.75, 1.0] and row["settings"]["flip"] is True
    # --out-confusion: the same row, and the images' matrices (the split's order) sum to the row's matrix.
    confusion = tmp_path / "confusion.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    without = out.read_bytes()
    assert main([*args, "--protocol", protocol, "--out-metrics", str(out), "--out-confusion", str(confusion)]) == 0
    assert out.read_bytes() == without
    ids, per_image = read_confusions(confusion)
    assert ids == read_ids(voc_root, "val") and per_image.shape == (len(ids), 21, 21)
    total = iou_from_confusion(per_image.sum(axis=0))
    assert round(100 * mean_iou(total), 2) == row["mIoU"]
    assert [None if np.isnan(v) else round(100 * v, 2) for v in total] == list(row["iou"].values())


def test_eval_cli_evaluates_the_split_of_the_params(voc_root, params_files, trained, tmp_path):
    """`segmentation.val_split` picks the evaluated split (eval-seg once took it from a flag that ignored it)."""
    overlay = tmp_path / "train_split.yaml"
    overlay.write_text("segmentation:\n  val_split: train\n")
    out = tmp_path / "metrics.json"
    args = ["eval-seg", *params_args([*params_files, str(overlay)]), "--data", str(voc_root)]
    assert main([*args, "--checkpoint", str(trained), "--protocol", "single", "--out-metrics", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["split"] == "train" and row["n_images"] == len(read_ids(voc_root, "train"))
