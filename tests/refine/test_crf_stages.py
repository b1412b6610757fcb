"""affinity-labels and crf-masks: CRF maps on hand-made inputs, the stages' outputs and resumability."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ppcseg.data.cams import save_cams
from ppcseg.data.voc import load_mask, read_class_labels, read_ids, save_mask, voc_dirs
from ppcseg.refine import affinity_labels, crf_masks
from ppcseg.refine.affinity_labels import alpha_label_map, background_argmax
from ppcseg.refine.crf import CrfSettings, crf_from_labels
from ppcseg.refine.crf_masks import crf_mask
from ppcseg.utils.errors import InputError
from tests.stages import args, default_params, interrupted_run, keep_only
from tests.tinyvoc import make_voc, oracle_cams


def _scene(size: int = 48):
    """A red square (class 7) on a grey background, and its mask."""
    image = np.full((size, size, 3), 120, dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[12:36, 10:30] = 7
    image[mask == 7] = (220, 30, 30)
    return image, mask


def _iou(pred: np.ndarray, gt: np.ndarray, cls: int = 7) -> float:
    return float(((pred == cls) & (gt == cls)).sum() / ((pred == cls) | (gt == cls)).sum())


def _noisy_cam(mask: np.ndarray) -> np.ndarray:
    """Foreground 0.8 with 15% holes, background 0.05 with 10% false-positive speckles of 0.9."""
    rng = np.random.default_rng(0)
    cam = np.where(mask == 7, 0.8, 0.05)
    cam[(mask == 7) & (rng.random(mask.shape) < 0.15)] = 0.05
    cam[(mask == 0) & (rng.random(mask.shape) < 0.10)] = 0.9
    return cam[None].astype(np.float32)


def test_background_argmax_by_alpha():
    cams = np.array([[[0.9, 0.5, 0.1]], [[0.2, 0.6, 0.0]]], dtype=np.float32)
    # max 0.9 / 0.6 / 0.1 -> bg (0.1)^a, (0.4)^a, (0.9)^a
    np.testing.assert_array_equal(background_argmax(np.array([3, 5]), cams, 1), [[3, 5, 0]])
    np.testing.assert_array_equal(background_argmax(np.array([3, 5]), cams, 0.1), [[3, 0, 0]])
    assert not background_argmax(np.array([], np.int64), np.zeros((0, 1, 3), np.float32), 4).any()


def test_clean_mask_survives_both_crfs():
    image, mask = _scene()
    cam = np.where(mask == 7, 1.0, 0.0)[None].astype(np.float32)
    crf = default_params()["affinity"]["crf"]
    for alpha in (4, 24):
        np.testing.assert_array_equal(alpha_label_map(image, np.array([7]), cam, alpha, crf), mask)
    np.testing.assert_array_equal(crf_mask(image, np.array([7]), cam, default_params()["crf_masks"]), mask)


def test_noisy_seed_is_improved_by_both_crfs():
    image, mask = _scene()
    cam = _noisy_cam(mask)
    seed = background_argmax(np.array([7]), cam, 8)
    crf = default_params()["affinity"]["crf"]
    before = _iou(seed, mask)
    hard = alpha_label_map(image, np.array([7]), cam, 8, crf)
    soft = crf_mask(image, np.array([7]), cam, default_params()["crf_masks"])
    assert before < 0.75
    # The hard-label CRF (gt_prob 0.7) cleans everything; the soft one keeps some confident (0.9) speckles.
    assert _iou(hard, mask) > 0.95 and _iou(soft, mask) > before + 0.08


def test_crf_mask_maps_labels_to_voc_indices():
    image, mask = _scene()
    two = mask.copy()
    two[30:44, 34:46] = 12
    image[two == 12] = (30, 30, 220)
    cams = np.stack([two == 7, two == 12]).astype(np.float32)
    out = crf_mask(image, np.array([7, 12]), cams, default_params()["crf_masks"])
    assert set(np.unique(out)) == {0, 7, 12} and _iou(out, two, 12) > 0.9


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = make_voc(tmp_path_factory.mktemp("voc") / "VOC2012", size=40, train=3, val=1, extra=2)
    oracle_cams(root, root.parent / "cams", noise=0.1)
    return root


def test_affinity_labels_stage_resumes_in_parallel(voc, tmp_path, monkeypatch):
    out = tmp_path / "labels"
    ids = read_ids(voc, "train_aug")
    run_args = args(data=str(voc), cams=str(voc.parent / "cams"), out=str(out))
    run_args.threads = 2
    partial = interrupted_run(monkeypatch, affinity_labels, run_args, default_params())
    keep_only(partial, [f"la/{ids[0]}.png", f"ha/{ids[0]}.png", f"la/{ids[1]}.png"])
    sentinel = np.full((40, 40), 19, dtype=np.uint8)
    for sub in ("la", "ha"):
        save_mask(partial / sub / f"{ids[0]}.png", sentinel)
    save_mask(partial / "la" / f"{ids[1]}.png", sentinel)  # half-done image: redone
    affinity_labels.run(run_args, default_params())
    assert not partial.exists()
    for sub in ("la", "ha"):
        assert sorted(p.stem for p in (out / sub).glob("*.png")) == sorted(ids)
    np.testing.assert_array_equal(load_mask(out / "la" / f"{ids[0]}.png"), sentinel)
    labels = read_class_labels(voc)
    for image_id in ids[1:]:
        la, ha = load_mask(out / "la" / f"{image_id}.png"), load_mask(out / "ha" / f"{image_id}.png")
        gt = load_mask(voc_dirs(voc)["masks_aug"] / f"{image_id}.png")
        assert set(np.unique(la)) <= {0, *labels[image_id]}
        # A high alpha lowers the background score: ha's foreground covers la's.
        assert ((la > 0) <= (ha > 0)).mean() > 0.99 and (la == gt).mean() > 0.9


def test_crf_masks_stage_resumes(voc, tmp_path, monkeypatch):
    out = tmp_path / "crf"
    ids = read_ids(voc, "train_aug")
    run_args = args(data=str(voc), cams=str(voc.parent / "cams"), out=str(out))
    partial = interrupted_run(monkeypatch, crf_masks, run_args, default_params())
    keep_only(partial, [f"{ids[-1]}.png"])
    sentinel = np.full((40, 40), 19, dtype=np.uint8)
    save_mask(partial / f"{ids[-1]}.png", sentinel)
    crf_masks.run(run_args, default_params())
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(ids)
    np.testing.assert_array_equal(load_mask(out / f"{ids[-1]}.png"), sentinel)
    for image_id in ids[:-1]:
        gt = load_mask(voc_dirs(voc)["masks_aug"] / f"{image_id}.png")
        assert (load_mask(out / f"{image_id}.png") == gt).mean() > 0.9
        assert Image.open(out / f"{image_id}.png").mode == "P"


def test_stage_names_a_cam_for_an_absent_class(voc, tmp_path):
    import shutil

    cams = tmp_path / "cams"
    shutil.copytree(voc.parent / "cams", cams)
    image_id = read_ids(voc, "train_aug")[0]
    absent = next(c for c in range(1, 21) if c not in read_class_labels(voc)[image_id])
    save_cams(cams / f"{image_id}.npz", [absent], np.zeros((1, 40, 40)))
    with pytest.raises(InputError, match=rf"{image_id}\.npz: CAM for class"):
        crf_masks.run(args(data=str(voc), cams=str(cams), out=str(tmp_path / "o")), default_params())


def _crf_with_features(image: np.ndarray, labels: np.ndarray, yx: bool) -> np.ndarray:
    """Reference hard-label CRF with explicitly stacked kernel features, (y, x, r, g, b) or (x, y, r, g, b)."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    height, width = labels.shape
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    pos = [ys, xs] if yx else [xs, ys]
    crf = dcrf.DenseCRF2D(width, height, 21)
    crf.setUnaryEnergy(unary_from_labels(labels, 21, gt_prob=0.7, zero_unsure=False))
    kind = {"kernel": dcrf.DIAG_KERNEL, "normalization": dcrf.NORMALIZE_SYMMETRIC}
    crf.addPairwiseEnergy(np.stack([p / 3 for p in pos]).reshape(2, -1), compat=3, **kind)
    rgb = [image[..., c].astype(np.float32) / 13 for c in range(3)]
    crf.addPairwiseEnergy(np.stack([p / 80 for p in pos] + rgb).reshape(5, -1), compat=10, **kind)
    return np.asarray(crf.inference(10)).reshape(21, height, width)


def test_la_ha_crf_kernels_use_the_official_feature_order():
    # A noisy non-square scene: the permutohedral lattice is not symmetric in the order of the features.
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    labels = rng.choice([0, 7, 12], size=(37, 53), p=[0.5, 0.3, 0.2])
    crf = default_params()["affinity"]["crf"]
    settings = CrfSettings.from_params(crf)
    official = crf_from_labels(image, labels, 21, settings, gt_prob=crf["gt_prob"])
    switched = crf_from_labels(image, labels, 21, settings, gt_prob=crf["gt_prob"], yx_features=False)
    np.testing.assert_allclose(official, _crf_with_features(image, labels, yx=True), atol=1e-6)
    np.testing.assert_allclose(switched, _crf_with_features(image, labels, yx=False), atol=1e-6)
    assert np.abs(official - switched).max() > 1e-3
    # The switch gives what DenseCRF2D's own kernels give (the form used before the official order was adopted).
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    before = dcrf.DenseCRF2D(53, 37, 21)
    before.setUnaryEnergy(unary_from_labels(labels, 21, gt_prob=0.7, zero_unsure=False))
    before.addPairwiseGaussian(sxy=3, compat=3)
    before.addPairwiseBilateral(sxy=80, srgb=13, rgbim=image, compat=10)
    np.testing.assert_array_equal(switched, np.asarray(before.inference(10)).reshape(21, 37, 53))
    assert (official.argmax(0) != switched.argmax(0)).any()
