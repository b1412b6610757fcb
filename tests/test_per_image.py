"""The per-image stage template (src/ppcseg/per_image.py): every stage that declares a PerImageStage is found by the
workflow under its own name, and the template's image lists and output files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ppcseg.cli import STAGES, stage_module
from ppcseg.per_image import PerImageStage
from ppcseg.workflow.stage_deps import per_image_stages
from tests.stages import default_params
from tests.tinyvoc import make_voc

SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_workflow_finds_every_per_image_stage_under_its_name():
    declared = [name for name in STAGES if isinstance(getattr(stage_module(name), "STAGE", None), PerImageStage)]
    assert list(per_image_stages(SRC)) == declared
    assert declared == ["infer-cam", "affinity-labels", "random-walk", "crf-masks", "export-predictions"]
    for name in declared:
        module = stage_module(name)
        assert module.STAGE.name == name.replace("-", "_")  # the rule's name, written in the folder's listing
        assert module.STAGE.params_keys == module.PARAMS_KEYS


def test_image_lists_and_output_files(tmp_path):
    voc = make_voc(tmp_path / "VOC2012", size=32, train=3, val=2, extra=1)
    params = default_params()
    labels = stage_module("affinity-labels").STAGE
    ids = labels.image_ids(argparse.Namespace(data=str(voc)), params)
    assert len(ids) == 4  # train_aug: train + the extra image
    assert labels.files(ids[:1]) == [f"la/{ids[0]}.png", f"ha/{ids[0]}.png"]
    infer = stage_module("infer-cam").STAGE
    params["infer_cam"]["splits"] = ["val", "train", "val"]
    listed = infer.image_ids(argparse.Namespace(data=str(voc)), params)
    assert len(listed) == 5 and len(set(listed)) == 5  # the union of the splits, each image once
    export = stage_module("export-predictions").STAGE
    flags = argparse.Namespace(data=str(voc), split="val", protocol="single")
    assert export.settings(flags, params)["flags"] == {"split": "val", "protocol": "single"}
