"""The segmentation tests' dataset (not square: predictions must come back at each image's own size), threads, params
files and one trained network shared by the train, eval and export tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppcseg.config import REPO_ROOT
from tests.segment.helpers import OVERLAY, train_cli
from tests.tinyvoc import make_voc

SHAPES = [(64, 64), (48, 72), (72, 56), (64, 80)]


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory) -> Path:
    """8 images: train_aug 5 (their SegmentationClassAug masks stand for pseudo-masks), val 3."""
    root = tmp_path_factory.mktemp("voc") / "VOC2012"
    return make_voc(root, size=64, train=4, val=3, extra=1, classes=[1, 2, 3], shapes=SHAPES)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def params_files(tmp_path_factory) -> list[str]:
    overlay = tmp_path_factory.mktemp("params") / "test.yaml"
    overlay.write_text(OVERLAY)
    return [str(REPO_ROOT / "params.yaml"), str(REPO_ROOT / "config" / "demo.yaml"), str(overlay)]


@pytest.fixture(scope="session")
def trained(voc_root, params_files, tmp_path_factory) -> Path:
    """A checkpoint of train-seg run once through the CLI."""
    base = tmp_path_factory.mktemp("train")
    assert train_cli(voc_root, params_files, base / "work", base / "seg.pt") == 0
    return base / "seg.pt"
