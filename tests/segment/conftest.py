"""The segmentation tests' dataset (not square: predictions must come back at each image's own size) and threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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
