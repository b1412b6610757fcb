"""eval-seeds: the one-pass threshold sweep equals per-threshold evaluation and mmseg's IoUMetric."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import torch

from ppcseg.data.cams import save_cams, seed_prediction
from ppcseg.data.voc import NUM_CLASSES, load_mask, read_class_labels, read_ids, voc_dirs
from ppcseg.evaluation import seeds
from ppcseg.evaluation.miou import ConfusionMatrix, iou_from_confusion, mean_iou, read_confusions
from ppcseg.evaluation.seeds import sweep_confusion, sweep_confusion_by_image, sweep_thresholds
from ppcseg.utils.errors import InputError
from tests.stages import args, default_params
from tests.tinyvoc import make_voc, oracle_cams

torch.set_num_threads(1)


def _random_images(count: int = 6, seed: int = 0):
    """GT with 255 borders, CAMs on a coarse grid so that ties (between classes, with thresholds) really occur."""
    rng = np.random.default_rng(seed)
    grid = np.array([0.0, 0.1, 0.25, 0.26, 0.27, 0.3, 0.5, 0.59, 0.6, 1.0], dtype=np.float16).astype(np.float32)
    images = []
    for index in range(count):
        h, w = rng.integers(5, 12, size=2)
        k = index % 4  # includes an image with no classes
        classes = np.sort(rng.choice(np.arange(1, 21), size=k, replace=False)).astype(np.int64)
        cams = grid[rng.integers(0, grid.size, (k, h, w))]
        gt = rng.choice(np.r_[0, classes, 255], size=(h, w)).astype(np.uint8)
        images.append((gt, classes, cams))
    return images


def test_sweep_equals_each_threshold_separately():
    images = _random_images()
    thresholds = [*sweep_thresholds(0.0, 0.6, 0.01), 0.26]
    conf = sweep_confusion(images, thresholds)
    assert conf.shape == (61, 21, 21)
    for index, t in enumerate(thresholds):
        single = ConfusionMatrix()
        for gt, classes, cams in images:
            single.update(gt, seed_prediction(classes, cams, t))
        np.testing.assert_array_equal(conf[index], single.matrix, err_msg=f"threshold {t}")


def test_per_image_matrices_are_each_image_evaluated_alone_and_sum_to_the_total():
    images = _random_images()
    thresholds = [*sweep_thresholds(0.0, 0.6, 0.01), 0.26]
    conf, per_image = sweep_confusion_by_image(images, thresholds, keep=-1)
    np.testing.assert_array_equal(conf, sweep_confusion(images, thresholds))
    assert per_image.shape == (len(images), 21, 21) and per_image.dtype == np.int64
    np.testing.assert_array_equal(per_image.sum(axis=0), conf[-1])
    for (gt, classes, cams), matrix in zip(images, per_image, strict=True):
        single = ConfusionMatrix()
        single.update(gt, seed_prediction(classes, cams, 0.26))
        np.testing.assert_array_equal(matrix, single.matrix)
    assert sweep_confusion_by_image([], thresholds, keep=-1)[1].shape == (0, 21, 21)


def test_seed_prediction_ties_go_to_background_then_lower_class():
    cams = np.array([[[0.3, 0.5, 0.2]], [[0.3, 0.5, 0.1]]], dtype=np.float32)
    np.testing.assert_array_equal(seed_prediction(np.array([4, 9]), cams, 0.3), [[0, 4, 0]])  # float32(0.3) ties
    assert sweep_confusion([(np.array([[0, 4, 0]], np.uint8), np.array([4, 9]), cams)], [0.3])[0].trace() == 3
    np.testing.assert_array_equal(seed_prediction(np.array([4, 9]), cams, 0.1), [[4, 4, 4]])


def test_sweep_matches_mmseg_iou_metric():
    try:
        import ppcseg.segment.compat  # noqa: F401  (registers the light mmcv.ops before mmseg)
    except ImportError:
        pass
    from mmseg.evaluation.metrics import IoUMetric

    images = _random_images(count=8, seed=3)
    for t in (0.0, 0.26, 0.5):
        metric = IoUMetric(ignore_index=255, iou_metrics=["mIoU"])
        metric.dataset_meta = {"classes": tuple(str(c) for c in range(NUM_CLASSES))}
        samples = [
            {
                "pred_sem_seg": {"data": torch.from_numpy(seed_prediction(c, m, t))[None]},
                "gt_sem_seg": {"data": torch.from_numpy(gt.astype(np.int64))[None]},
            }
            for gt, c, m in images
        ]
        metric.process([], samples)
        intersect = sum(r[0] for r in metric.results).numpy()
        union = sum(r[1] for r in metric.results).numpy()
        ours = iou_from_confusion(sweep_confusion(images, [t])[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            np.testing.assert_allclose(ours, intersect / union, equal_nan=True)
        assert round(100 * mean_iou(ours), 2) == metric.compute_metrics(metric.results)["mIoU"]


def test_sweep_thresholds_are_the_official_values():
    t = sweep_thresholds(0.0, 0.6, 0.01)
    assert t.size == 60 and t[27] == 27 / 100.0 and t[-1] == 59 / 100.0
    assert sweep_thresholds(0.1, 0.3, 0.05).tolist() == [0.1, 0.15, 0.2, 0.25]
    with pytest.raises(InputError, match="seeds.sweep"):
        sweep_thresholds(0.5, 0.2, 0.1)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = make_voc(tmp_path_factory.mktemp("voc") / "VOC2012", size=40, train=5, val=1, extra=1)
    oracle_cams(root, root.parent / "cams", noise=0.3)
    return root


def test_run_writes_row_and_curve(voc, tmp_path):
    params = default_params()
    metrics, curve = tmp_path / "seed.json", tmp_path / "curve.csv"
    run_args = args(data=str(voc), cams=str(voc.parent / "cams"), out_metrics=str(metrics), out_curve=str(curve))
    seeds.run(argparse.Namespace(**vars(run_args), out_confusion=None), params)
    without = metrics.read_bytes(), curve.read_bytes()
    confusion = tmp_path / "seed_confusion.npz"
    seeds.run(argparse.Namespace(**vars(run_args), out_confusion=str(confusion)), params)
    assert (metrics.read_bytes(), curve.read_bytes()) == without  # the same outputs with or without the flag
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.csv", "seed.json", "seed_confusion.npz"]
    row = json.loads(metrics.read_text())
    # The images' matrices, in the split's order, sum to the matrix of the row's (fixed-threshold) mIoU and IoUs.
    ids, per_image = read_confusions(confusion)
    assert ids == read_ids(voc, "train") and per_image.shape == (5, 21, 21)
    total = iou_from_confusion(per_image.sum(axis=0))
    assert round(100 * mean_iou(total), 2) == row["mIoU"]
    assert [None if np.isnan(v) else round(100 * v, 2) for v in total] == list(row["iou"].values())
    rows = list(csv.DictReader(curve.open()))
    assert len(rows) == 60 and rows[27]["threshold"] == "0.27"
    best = max(rows, key=lambda r: float(r["mIoU"]))
    assert row["stage"] == "seed" and row["split"] == "train" and row["n_images"] == 5
    assert row["settings"]["bg_threshold"] == 0.26
    assert row["settings"]["gt_tuned_mIoU"] == float(best["mIoU"])
    assert row["settings"]["gt_tuned_bg_threshold"] == float(best["threshold"])
    # The fixed-threshold row equals a separate evaluation.
    labels = read_class_labels(voc)
    single = ConfusionMatrix()
    from ppcseg.data.cams import load_cams

    for image_id in read_ids(voc, "train"):
        gt = load_mask(voc_dirs(voc)["masks"] / f"{image_id}.png")
        classes, cams = load_cams(voc.parent / "cams", image_id, labels[image_id], gt.shape)
        single.update(gt, seed_prediction(classes, cams, 0.26))
    assert row["mIoU"] == round(100 * single.miou(), 2)
    # Oracle CAMs: 0.9 +- 0.3 inside, 0.05 +- 0.3 outside; any threshold in [0.35, 0.6) separates them exactly.
    assert row["settings"]["gt_tuned_mIoU"] == 100.0 and 0.35 <= row["settings"]["gt_tuned_bg_threshold"] < 0.6
    assert row["mIoU"] < 100.0


def test_run_names_a_bad_cam_file(voc, tmp_path):
    import shutil

    cams = tmp_path / "cams"
    shutil.copytree(voc.parent / "cams", cams)
    image_id = read_ids(voc, "train")[2]
    labels = read_class_labels(voc)
    save_cams(
        cams / f"{image_id}.npz", [c for c in range(1, 21) if c not in labels[image_id]][:1], np.zeros((1, 40, 40))
    )
    run_args = args(
        data=str(voc),
        cams=str(cams),
        out_metrics=str(tmp_path / "m.json"),
        out_curve=str(tmp_path / "c"),
        out_confusion=str(tmp_path / "c.npz"),
    )
    with pytest.raises(InputError, match=rf"{image_id}\.npz: CAM for class"):
        seeds.run(run_args, default_params())
    (cams / f"{image_id}.npz").unlink()
    with pytest.raises(InputError, match=rf"{image_id}\.npz: CAM file not found"):
        seeds.run(run_args, default_params())
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "c.npz").exists()
