"""The rehearsal's fixture files are what the real stages take: prepare-voc with data.expect_full, weights loaders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ppcseg.cli import main
from ppcseg.config import REPO_ROOT
from ppcseg.data.voc import read_ids, voc_dirs
from ppcseg.models.backbones import build_backbone
from tests.rehearsal.fixtures import FILES, VOC_SIZES, build_archives, build_weights

torch.set_num_threads(2)


def prepare(tmp_path: Path, src: Path, *overlays: Path) -> int:
    params = ["--params", str(REPO_ROOT / "params.yaml")] + [a for o in overlays for a in ("--params", str(o))]
    return main(
        ["prepare-voc", *params, "--voc-archive", str(src / FILES["voc"]), "--sbd-archive", str(src / FILES["sbd"])]
        + ["--out", str(tmp_path / "VOC2012")]
    )


def test_cut_down_voc_is_prepared_only_with_expect_full_false(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "fixtures"
    build_archives(src, n_train=3, n_val=2, n_sbd=2)
    # params.yaml: the paper's counts are required, so the cut-down VOC is refused naming what differs
    assert prepare(tmp_path, src) == 2
    assert "train_aug: 5, expected 10582" in capsys.readouterr().err
    assert not (tmp_path / "VOC2012").exists()

    overlay = tmp_path / "cut.yaml"
    overlay.write_text("data:\n  expect_full: false\n")
    assert prepare(tmp_path, src, overlay) == 0
    root = tmp_path / "VOC2012"
    assert (len(read_ids(root, "train")), len(read_ids(root, "val")), len(read_ids(root, "train_aug"))) == (3, 2, 5)
    sizes = {Image.open(p).size[::-1] for p in voc_dirs(root)["images"].glob("*.jpg")}
    assert sizes == set(VOC_SIZES)


def test_weight_files_load_completely(tmp_path: Path) -> None:
    """Every key of ResNet-38 from the MXNet file and of ResNet-101 from the torchvision file, shapes checked."""
    build_weights(tmp_path)
    for name in ("resnet38", "resnet101"):
        net = build_backbone(name, tmp_path / FILES[name])
        assert all(torch.isfinite(p).all() for p in net.state_dict().values() if p.is_floating_point())
