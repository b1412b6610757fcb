"""The generated demo dataset: VOC layout, determinism, label consistency, borders, learnable classes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppcseg.data import synthetic
from ppcseg.data.voc import PALETTE, load_image, load_mask, read_class_labels, read_ids
from ppcseg.utils.errors import InputError

SETTINGS = {
    "seed": 3,
    "image_size": 64,
    "num_train": 12,
    "num_val": 8,
    "num_train_aug_extra": 10,
    "min_classes": 1,
    "max_classes": 3,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.make_synthetic_voc(tmp_path_factory.mktemp("syn") / "VOC2012", **SETTINGS)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_byte_identical_regeneration(dataset: Path, tmp_path: Path) -> None:
    again = synthetic.make_synthetic_voc(tmp_path / "VOC2012", **SETTINGS)
    assert _files(again) == _files(dataset)
    other = synthetic.make_synthetic_voc(tmp_path / "other", **{**SETTINGS, "seed": 4})
    assert _files(other) != _files(dataset)


def test_layout_and_splits(dataset: Path) -> None:
    assert sorted(p.name for p in dataset.iterdir()) == [
        "ImageSets",
        "JPEGImages",
        "SaliencyMaps",
        "SegmentationClass",
        "SegmentationClassAug",
        "cls_labels.json",
    ]
    train, val, train_aug = (read_ids(dataset, s) for s in ("train", "val", "train_aug"))
    assert len(train) == 12 and len(val) == 8 and len(train_aug) == 22
    assert set(train) <= set(train_aug) and not set(val) & set(train_aug)
    for ids in (train, val, train_aug):
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"20(0[7-9]|1[01])_\d{6}", i) for i in train_aug + val)
    everything = sorted(train_aug + val)
    assert sorted(p.stem for p in (dataset / "JPEGImages").glob("*.jpg")) == everything
    assert sorted(p.stem for p in (dataset / "SegmentationClassAug").glob("*.png")) == everything
    assert sorted(p.stem for p in (dataset / "SaliencyMaps").glob("*.png")) == everything
    assert sorted(p.stem for p in (dataset / "SegmentationClass").glob("*.png")) == sorted(train + val)
    assert not [p for p in dataset.parent.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_masks_palette_labels_and_borders(dataset: Path) -> None:
    labels = read_class_labels(dataset)
    assert sorted(labels) == sorted(read_ids(dataset, "train_aug") + read_ids(dataset, "val"))
    with_gt = set(read_ids(dataset, "train") + read_ids(dataset, "val"))
    for image_id, classes in labels.items():
        image = load_image(dataset / "JPEGImages" / f"{image_id}.jpg")
        assert image.shape == (64, 64, 3)
        aug_path = dataset / "SegmentationClassAug" / f"{image_id}.png"
        with Image.open(aug_path) as img:
            assert img.mode == "P" and img.getpalette()[: 3 * 21] == PALETTE[: 3 * 21]
        aug = load_mask(aug_path, expected_shape=(64, 64))
        assert 255 not in aug
        present = sorted(int(c) for c in np.unique(aug) if c)
        assert classes == present and 1 <= len(classes) <= 3
        with Image.open(dataset / "SaliencyMaps" / f"{image_id}.png") as sal_img:
            assert sal_img.mode == "L"
            sal = np.asarray(sal_img).astype(float)
        assert sal[aug > 0].mean() > sal[aug == 0].mean() + 100
        if image_id in with_gt:
            gt = load_mask(dataset / "SegmentationClass" / f"{image_id}.png", expected_shape=(64, 64))
            border = gt == 255
            assert border.any() and border.mean() < 0.3
            np.testing.assert_array_equal(gt[~border], aug[~border])
            # the band sits exactly where the label changes
            edges = (np.diff(aug.astype(int), axis=0) != 0).any()
            assert edges and border[1:][np.diff(aug.astype(int), axis=0) != 0].all()


def test_classes_are_separable_by_simple_statistics(tmp_path: Path) -> None:
    """A proxy for 'learnable from image labels': per-object colour + texture statistics identify the class."""
    root = synthetic.make_synthetic_voc(
        tmp_path / "VOC2012", **{**SETTINGS, "num_train": 60, "num_val": 60, "num_train_aug_extra": 0}
    )
    feats: dict[str, list[tuple[int, np.ndarray]]] = {"train": [], "val": []}
    for split in feats:
        for image_id in read_ids(root, split):
            image = load_image(root / "JPEGImages" / f"{image_id}.jpg").astype(float)
            mask = load_mask(root / "SegmentationClassAug" / f"{image_id}.png")
            for cls in np.unique(mask[mask > 0]):
                pixels = image[mask == cls]
                if len(pixels) >= 30:
                    feats[split].append(
                        (int(cls), np.r_[pixels.mean(0), np.percentile(pixels, [20, 80], axis=0).ravel()])
                    )
    centroids = {}
    for cls in range(1, 21):
        rows = [f for c, f in feats["train"] if c == cls]
        if rows:
            centroids[cls] = np.mean(rows, axis=0)
    hits = [
        c == min(centroids, key=lambda k: np.linalg.norm(f - centroids[k])) for c, f in feats["val"] if c in centroids
    ]
    assert np.mean(hits) > 0.8


@pytest.mark.parametrize(
    "key,value",
    [("min_classes", 0), ("max_classes", 21), ("image_size", 8), ("num_val", 0), ("num_train_aug_extra", -1)],
)
def test_bad_settings_name_the_key(tmp_path: Path, key: str, value: int) -> None:
    with pytest.raises(InputError, match=f"data.synthetic.{key}"):
        synthetic.make_synthetic_voc(tmp_path / "VOC2012", **{**SETTINGS, key: value})
    assert not (tmp_path / "VOC2012").exists()


def test_failure_leaves_previous_output_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "VOC2012"
    root.mkdir()
    (root / "old.txt").write_text("previous")
    calls = []

    def broken(index: int, **kwargs):
        calls.append(index)
        if len(calls) > 3:
            raise RuntimeError("killed")
        return real(index, **kwargs)

    real = synthetic.render_image
    monkeypatch.setattr(synthetic, "render_image", broken)
    with pytest.raises(RuntimeError):
        synthetic.make_synthetic_voc(root, **SETTINGS)
    assert [p.name for p in tmp_path.iterdir()] == ["VOC2012"] and (root / "old.txt").exists()


def test_stage_run(tmp_path: Path) -> None:
    params = {"data": {"synthetic": {**SETTINGS, "num_train": 2, "num_val": 2, "num_train_aug_extra": 1}}}
    synthetic.run(argparse.Namespace(out=tmp_path / "VOC2012", threads=None), params)
    assert len(read_ids(tmp_path / "VOC2012", "train_aug")) == 3
