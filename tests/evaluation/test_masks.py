"""eval-masks: pseudo-mask mIoU on a hand-made case and through the stage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ppcseg.data.voc import load_mask, read_ids, save_mask, voc_dirs
from ppcseg.evaluation import masks
from ppcseg.evaluation.masks import mask_iou
from ppcseg.evaluation.miou import ConfusionMatrix, iou_from_confusion, mean_iou, read_confusions
from ppcseg.utils.errors import InputError
from tests.stages import args, default_params
from tests.tinyvoc import make_voc


def test_mask_iou_by_hand():
    gt = np.array([[0, 0, 1, 1], [0, 255, 1, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 1, 255, 1]], dtype=np.uint8)
    iou = mask_iou([(gt, pred)])
    # background: TP 2, GT 3, pred 2 (the 255-GT pixel ignored) -> 2 / (3 + 2 - 2).
    assert iou[0] == pytest.approx(2 / 3)
    # class 1: TP 3, GT 4, pred 4 (the unlabelled prediction counts as a miss, not as class 1) -> 3 / 5.
    assert iou[1] == pytest.approx(3 / 5)
    assert np.isnan(iou[2:]).all()


def test_mask_iou_is_the_projects_miou_formula():
    """One formula (evaluation/miou.py): without unlabelled pixels, the seeds' and segmentation's confusion matrix."""
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 21, (2, 30, 30)).astype(np.uint8)
    gt[:, :3] = 255
    pred = rng.integers(0, 21, (2, 30, 30)).astype(np.uint8)
    confusion = ConfusionMatrix()
    for g, p in zip(gt, pred, strict=True):
        confusion.update(g, p)
    assert np.array_equal(mask_iou(zip(gt, pred, strict=True)), confusion.iou(), equal_nan=True)
    pred[0, 5, 5] = 30  # neither a class nor unlabelled: once counted silently in another class's row
    with pytest.raises(ValueError, match="labels outside"):
        mask_iou(zip(gt, pred, strict=True))


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc") / "VOC2012", size=40, train=3, val=1, extra=0)


def test_run_perfect_masks_and_missing_mask(voc, tmp_path):
    pseudo = tmp_path / "masks"
    for image_id in read_ids(voc, "train"):
        # The borderless SegmentationClassAug masks are perfect pseudo-masks for the bordered SegmentationClass.
        save_mask(pseudo / f"{image_id}.png", load_mask(voc_dirs(voc)["masks_aug"] / f"{image_id}.png"))
    out = tmp_path / "mask.json"
    masks.run(args(data=str(voc), masks=str(pseudo), out_metrics=str(out), out_confusion=None), default_params())
    row = json.loads(out.read_text())
    assert row["stage"] == "mask" and row["split"] == "train" and row["mIoU"] == 100.0 and row["n_images"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.json", "masks"]
    shutil.rmtree(pseudo)
    pseudo.mkdir()
    with pytest.raises(InputError, match=r"masks/.*\.png: mask not found"):
        run_args = args(data=str(voc), masks=str(pseudo), out_metrics=str(out), out_confusion=str(tmp_path / "c.npz"))
        masks.run(run_args, default_params())
    assert not (tmp_path / "c.npz").exists()


def test_run_writes_per_image_matrices_that_sum_to_the_row(voc, tmp_path):
    """Pseudo-masks with wrong and unlabelled (255) pixels: the 22-column matrices of the images, in the split's
    order, sum to the matrix of the row's IoUs."""
    pseudo = tmp_path / "masks"
    ids = read_ids(voc, "train")
    for index, image_id in enumerate(ids):
        mask = load_mask(voc_dirs(voc)["masks_aug"] / f"{image_id}.png").copy()
        mask[: 5 * (index + 1)] = 255
        mask[-4:] = (index + 3) % 21
        save_mask(pseudo / f"{image_id}.png", mask)
    out, confusion = tmp_path / "mask.json", tmp_path / "mask_confusion.npz"
    masks.run(args(data=str(voc), masks=str(pseudo), out_metrics=str(out), out_confusion=None), default_params())
    without = out.read_bytes()
    masks.run(
        args(data=str(voc), masks=str(pseudo), out_metrics=str(out), out_confusion=str(confusion)), default_params()
    )
    assert out.read_bytes() == without
    row = json.loads(without)
    found, per_image = read_confusions(confusion)
    assert found == ids and per_image.shape == (3, 21, 22) and per_image[:, :, 21].sum() > 0
    total = iou_from_confusion(per_image.sum(axis=0))
    assert round(100 * mean_iou(total), 2) == row["mIoU"] < 100
    assert [None if np.isnan(v) else round(100 * v, 2) for v in total] == list(row["iou"].values())
    for image_id, matrix in zip(ids, per_image, strict=True):
        alone = ConfusionMatrix(unlabelled=True)
        alone.update(load_mask(voc_dirs(voc)["masks"] / f"{image_id}.png"), load_mask(pseudo / f"{image_id}.png"))
        np.testing.assert_array_equal(matrix, alone.matrix)
