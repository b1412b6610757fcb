"""AffinityNet pairs, labels and loss, train-affinity (exact resume), and the random walk."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ppcseg.data.voc import load_mask, read_ids, save_mask, voc_dirs
from ppcseg.refine import random_walk, train_affinity
from ppcseg.refine.affinity_net import (
    load_affinity_net,
    official_radius,
    pair_indices,
    pair_offsets,
    sparse_affinity,
)
from ppcseg.refine.random_walk import random_walk_mask, walk
from ppcseg.refine.train_affinity import affinity_loss, affinity_target, pair_labels
from ppcseg.utils.errors import InputError
from tests.stages import args, default_params, interrupted_run, keep_only
from tests.tinyvoc import make_voc, oracle_cams

torch.set_num_threads(2)


def _within(i: int, j: int, width: int, radius: int) -> bool:
    return (i // width - j // width) ** 2 + (i % width - j % width) ** 2 < radius * radius


def test_pair_offsets():
    offsets = pair_offsets(5)
    assert len(offsets) == 34 and len(set(offsets)) == 34
    assert all(dy * dy + dx * dx < 25 and (dy > 0 or dx > 0) for dy, dx in offsets)
    assert not {(-dy, -dx) for dy, dx in offsets} & set(offsets)


@pytest.mark.parametrize(("h", "w", "count"), [(12, 12, 1088), (47, 63, 80410), (63, 47, 78234)])
def test_official_pairs_start_away_from_the_bottom_and_side_borders(h, w, count):
    # Counts of the official AffinityNet at radius 5 (a 96x96 image; a 375x500 VOC image and its portrait at stride 8).
    src, dst = pair_indices(5, h, w)
    assert src.numel() == dst.numel() == count
    rows, cols = src // w, src % w
    # start pixels: rows 0..h-5 and columns 4..w-5, each starting exactly one pair per offset
    starts = set(src.tolist())
    assert starts == {y * w + x for y in range(h - 4) for x in range(4, w - 4)}
    assert rows.max() == h - 5 and cols.min() == 4 and cols.max() == w - 5
    assert src.numel() == 34 * len(starts)
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert len(pairs) == count and all(_within(i, j, w, 5) for i, j in pairs)
    assert not {(j, i) for i, j in pairs} & pairs
    # grouped by offset: the first block is (0, +1) from every start pixel in raster order
    block = len(starts)
    assert src[:block].tolist() == sorted(starts) and (dst[:block] - src[:block] == 1).all()


def test_official_radius_shrinks_on_small_maps():
    # shorter side under 2 * radius + 1 = 11: radius (side - 1) // 2
    assert [official_radius(5, side, 40) for side in (11, 10, 9, 7, 5, 3)] == [5, 4, 4, 3, 2, 1]
    src, _ = pair_indices(5, 10, 30)  # radius 4: 22 offsets, rows 0..6, columns 3..26
    assert len(pair_offsets(4)) == 22 and src.numel() == 22 * 7 * 24 and set((src % 30).tolist()) == set(range(3, 27))
    assert pair_indices(5, 4, 4)[0].numel() == 0  # radius 1: no offsets (the official code fails on such maps)


def test_all_pairs_switch_takes_every_in_image_pair():
    h, w = 7, 9
    src, dst = pair_indices(5, h, w, all_pairs=True)
    got = {tuple(sorted(p)) for p in zip(src.tolist(), dst.tolist(), strict=True)}
    expected = {(i, j) for i in range(h * w) for j in range(i + 1, h * w) if _within(i, j, w, 5)}
    assert got == expected and len(got) == src.numel()
    assert pair_indices(5, 12, 12, all_pairs=True)[0].numel() == 3384
    assert pair_indices(5, 47, 63, all_pairs=True)[0].numel() == 93314


def test_walk_equals_dense_matrix_power():
    torch.manual_seed(0)
    features = torch.rand(1, 6, 5, 7)
    affinity, _ = sparse_affinity(features, radius=3, beta=2.0)
    dense = affinity.to_dense()
    assert torch.allclose(dense, dense.t()) and torch.all(dense.diagonal() == 1)
    scores = torch.rand(3, 35)
    for logt in (0, 2, 6):
        trans = dense / dense.sum(dim=0, keepdim=True)
        for _ in range(logt):
            trans = trans @ trans
        torch.testing.assert_close(walk(affinity, scores, logt), scores @ trans, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("all_pairs", [False, True])
def test_sparse_affinity_holds_exactly_the_chosen_pairs(all_pairs):
    torch.manual_seed(0)
    h, w = 12, 14
    features = torch.rand(1, 6, h, w)
    flat = features.flatten(2)[0]
    chosen = set(zip(*(t.tolist() for t in pair_indices(5, h, w, all_pairs=all_pairs)), strict=True))
    expected = torch.eye(h * w)
    for i, j in chosen:
        expected[i, j] = expected[j, i] = torch.exp(-(flat[:, i] - flat[:, j]).abs().mean()) ** 3
    affinity, _ = sparse_affinity(features, radius=5, beta=3.0, all_pairs=all_pairs)
    torch.testing.assert_close(affinity.to_dense(), expected)
    # official: the bottom 4 rows and the side 4 columns start no pair, so their mutual affinities are 0
    assert (expected[h * w - 1, h * w - 2] > 0) == all_pairs


class TwoRegions(torch.nn.Module):
    """Hand-made affinity features: the left and right halves of the image are unrelated regions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 8, x.shape[-1] // 8
        features = torch.zeros(1, 4, h, w)
        features[:, :, :, w // 2 :] = 5.0
        return features


def test_random_walk_spreads_a_partial_seed_over_its_region():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    cam = np.zeros((1, 64, 64), dtype=np.float32)
    cam[0, 8:40, 36:60] = 0.9  # seed covers part of the right region
    rng = np.random.default_rng(0)
    cam[0, :, :32][rng.random((64, 32)) < 0.1] = 0.9  # false-positive speckles on the left
    mask = random_walk_mask(TwoRegions(), image, np.array([5]), cam, beta=8, logt=6, bg_score=0.27, radius=5)
    assert (mask[:, 36:] == 5).all() and (mask[:, :28] == 0).all()  # bilinear upsampling blurs the 8 px seam
    seed = np.where(cam[0] > 0.27, 5, 0)
    assert (seed[:, 32:] == 5).mean() < 0.5 and (seed[:, :32] == 5).any()


def test_affinity_target_and_pair_labels():
    la = np.zeros((16, 16), dtype=np.uint8)
    ha = np.zeros((16, 16), dtype=np.uint8)
    la[:8, :8] = 3  # confident class 3 block
    ha[:8, :] = 3  # ha's larger foreground: the top-right block is uncertain
    valid = np.ones((16, 16), dtype=bool)
    valid[8:, 8:] = False  # padding
    target = affinity_target(la, ha, valid)
    np.testing.assert_array_equal(target, [[3, 255], [0, 255]])
    pairs = pair_indices(2, 2, 2, all_pairs=True)  # the official set of a 2x2 map is empty
    bg, fg, neg = pair_labels(torch.from_numpy(target)[None], *pairs)
    # pairs of a 2x2 grid within radius 2: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); only (0,2) is between valid pixels
    assert bg.sum() == 0 and fg.sum() == 0 and neg.sum() == 1
    src, dst = pairs
    pos = int(torch.nonzero(neg[0])[0, 0])
    assert {src[pos].item(), dst[pos].item()} == {0, 2}
    aff = torch.full((1, src.numel()), 0.5)
    aff[0, pos] = 0.25
    loss = affinity_loss(aff, bg, fg, neg)
    assert loss["bg_loss"] == 0 and loss["fg_loss"] == 0
    assert loss["neg_loss"].item() == pytest.approx(-np.log(1 + 1e-5 - 0.25) / (1 + 1e-5), rel=1e-5)
    assert loss["loss"].item() == pytest.approx(loss["neg_loss"].item() / 2)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = make_voc(tmp_path_factory.mktemp("voc") / "VOC2012", size=48, train=3, val=1, extra=1)
    labels = root.parent / "labels"
    for image_id in read_ids(root, "train_aug"):
        gt = load_mask(voc_dirs(root)["masks_aug"] / f"{image_id}.png")
        save_mask(labels / "la" / f"{image_id}.png", gt)
        save_mask(labels / "ha" / f"{image_id}.png", gt)
    oracle_cams(root, root.parent / "cams", noise=0.2)
    return root


def _params():
    return default_params(
        cam={"backbone": "tiny"},
        affinity={
            "crop_size": 40,
            "radius": 2,
            "batch_size": 2,
            "epochs": 2,
            "lr": 0.05,
            "checkpoint_every": 2,
            "num_workers": 0,
        },
        random_walk={"logt": 3},
    )


def test_train_affinity_resumes_exactly_then_random_walk(voc, tmp_path, caplog, monkeypatch):
    caplog.set_level("INFO", logger="ppcseg")
    state = tmp_path / "state"
    run_args = args(
        data=str(voc),
        labels=str(voc.parent / "labels"),
        out=str(tmp_path / "aff.pt"),
        out_loss=str(tmp_path / "loss.csv"),
        state_dir=str(state),
        weights=None,
    )
    train_affinity.run(run_args, _params())  # 4 steps; state saved at step 2
    # 5x5 features at radius 2: the official set has 4 offsets from 4 rows x 3 columns (all in-image pairs: 72)
    assert "48 pairs per crop" in caplog.text
    first = load_affinity_net(tmp_path / "aff.pt").state_dict()
    rows = list(csv.DictReader(open(tmp_path / "loss.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(np.isfinite(float(r["loss"])) for r in rows)
    (tmp_path / "aff.pt").unlink()
    train_affinity.run(run_args, _params())  # resumes from step 2
    second = load_affinity_net(tmp_path / "aff.pt").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert list(csv.DictReader(open(tmp_path / "loss.csv"))) == rows

    out = tmp_path / "rw"
    ids = read_ids(voc, "train_aug")
    sentinel = np.full((48, 48), 19, dtype=np.uint8)
    rw_args = args(data=str(voc), cams=str(voc.parent / "cams"), checkpoint=str(tmp_path / "aff.pt"), out=str(out))
    partial = interrupted_run(monkeypatch, random_walk, rw_args, _params())
    keep_only(partial, [f"{ids[0]}.png"])
    save_mask(partial / f"{ids[0]}.png", sentinel)
    random_walk.run(rw_args, _params())
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(ids)
    np.testing.assert_array_equal(load_mask(out / f"{ids[0]}.png"), sentinel)
    for image_id in ids[1:]:
        assert load_mask(out / f"{image_id}.png").shape == (48, 48)


def test_train_affinity_reads_its_own_workers_and_checkpoint_interval(voc, tmp_path, monkeypatch):
    """affinity.num_workers and affinity.checkpoint_every, not train-cam's (it once read cam.*)."""
    workers = []

    def loader(*a, num_workers, **kw):
        workers.append(num_workers)
        return DataLoader(*a, num_workers=0, **kw)  # workers need not be started to see the value

    monkeypatch.setattr(train_affinity, "DataLoader", loader)
    params = _params()
    params["cam"] |= {"num_workers": 0, "checkpoint_every": 1}
    params["affinity"] |= {"num_workers": 3, "checkpoint_every": 3}
    state = tmp_path / "s"
    paths = dict(out=str(tmp_path / "a.pt"), out_loss=str(tmp_path / "l.csv"), state_dir=str(state), weights=None)
    train_affinity.run(args(data=str(voc), labels=str(voc.parent / "labels"), **paths), params)  # 4 steps
    assert workers and set(workers) == {3}
    assert [p.name for p in state.iterdir()] == ["state_00000003.pt"]


def test_train_affinity_needs_labels(voc, tmp_path):
    run_args = args(
        data=str(voc),
        labels=str(tmp_path / "none"),
        out=str(tmp_path / "a.pt"),
        out_loss=str(tmp_path / "l.csv"),
        state_dir=str(tmp_path / "s"),
        weights=None,
    )
    with pytest.raises(InputError, match="none: no la/ha affinity labels"):
        train_affinity.run(run_args, _params())


def test_train_affinity_starts_over_on_new_images_under_the_same_paths(voc, tmp_path, caplog):
    """A state is resumed only on the same inputs: the images count, not only the la/ha maps (as in train-cam)."""
    data = tmp_path / "data"
    shutil.copytree(voc.parent, data)
    root = data / voc.name
    run_args = args(
        data=str(root),
        labels=str(data / "labels"),
        out=str(tmp_path / "a.pt"),
        out_loss=str(tmp_path / "l.csv"),
        state_dir=str(tmp_path / "s"),
        weights=None,
        seed=0,
    )
    train_affinity.run(run_args, _params())  # leaves its state at step 2
    image = voc_dirs(root)["images"] / f"{read_ids(root, 'train_aug')[0]}.jpg"
    Image.fromarray(np.ascontiguousarray(np.asarray(Image.open(image))[:, ::-1])).save(image, quality=95)
    caplog.set_level("INFO", logger="ppcseg")
    train_affinity.run(run_args, _params())
    assert "other settings or inputs" in caplog.text and "resuming" not in caplog.text


def test_train_affinity_fix_pair_region_trains_on_every_in_image_pair(voc, tmp_path, caplog):
    caplog.set_level("INFO", logger="ppcseg")
    params = _params()
    params["affinity"] = {**params["affinity"], "epochs": 1, "fix_pair_region": True}
    run_args = args(
        data=str(voc),
        labels=str(voc.parent / "labels"),
        out=str(tmp_path / "a.pt"),
        out_loss=str(tmp_path / "l.csv"),
        state_dir=str(tmp_path / "s"),
        weights=None,
    )
    train_affinity.run(run_args, params)
    assert "72 pairs per crop" in caplog.text


def test_affinity_crop_pads_with_black_pixels(voc):
    # As the official crop: the raw image is padded with 0 before normalisation, so padding reads as black.
    ids = read_ids(voc, "train_aug")
    dataset = train_affinity.AffinityDataset(voc, voc.parent / "labels", ids, crop=64, seed=0)
    x, target = dataset[0]
    black = torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]).view(3, 1, 1)
    padded = (x - black).abs().amax(dim=0) < 1e-5
    assert padded.float().mean().item() == pytest.approx(1 - 48**2 / 64**2, abs=0.02)  # a 48 px image, 64 px crop
    assert (target == 255).float().mean() >= 0.25  # blocks of padding only
