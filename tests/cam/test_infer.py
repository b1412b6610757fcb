"""infer-cam: multi-scale CAM combination (SEAM and EPS), the CAM file format and its reader, resumability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ppcseg.cam import infer
from ppcseg.cam.infer import infer_image, scaled_inputs
from ppcseg.data.cams import cam_path, load_cams, save_cams
from ppcseg.data.voc import load_image, read_class_labels, read_ids, voc_dirs
from ppcseg.per_image import split_ids
from ppcseg.utils.checkpoint import save_checkpoint
from ppcseg.utils.errors import InputError
from tests.stages import StubCamNet, args, default_params, interrupted_run, keep_only
from tests.tinyvoc import make_voc

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc") / "VOC2012", size=40, train=3, val=2, extra=1)


def _image(height: int = 37, width: int = 45) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_seam_single_pass_matches_the_formula():
    """Scale 1, no flip: cam_rv -> input size (align_corners=True) -> original (False) -> clip -> min-max 1e-5 rule."""
    net = StubCamNet().eval()
    image = _image()
    classes = [3, 15]
    got = infer_image(net, image, classes, method="seam", scales=[1.0], flip=False)
    x = scaled_inputs(image, [1.0])[0][None]
    cam = net(x)["cam_rv"][:, classes]
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=True)
    cam = F.interpolate(cam, size=image.shape[:2], mode="bilinear", align_corners=False)[0].detach().numpy()
    cam = np.maximum(cam, 0)
    low, high = cam.min(axis=(1, 2), keepdims=True), cam.max(axis=(1, 2), keepdims=True)
    expected = np.where(cam < low + 1e-5, 0, cam)
    expected = np.clip((expected - low - 1e-5) / (high - low + 1e-5), 0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.shape == (2, 37, 45) and got.max() == pytest.approx(1.0, abs=1e-3)


def test_eps_divides_softmax_sum_by_max():
    net = StubCamNet(background_channel=20, method="eps").eval()
    image = _image()
    got = infer_image(net, image, [1, 20], method="eps", scales=[1.0], flip=False)
    x = scaled_inputs(image, [1.0])[0][None]
    prob = torch.softmax(net(x)["cam"], dim=1)[:, [0, 19]]  # EPS layout: class k at channel k - 1
    prob = F.interpolate(prob, size=image.shape[:2], mode="bilinear", align_corners=False)[0].detach().numpy()
    np.testing.assert_allclose(got, prob / (prob.max(axis=(1, 2), keepdims=True) + 1e-5), atol=1e-5)


def test_batched_flips_equal_separate_passes_and_flip_is_undone():
    net = StubCamNet().eval()
    image = _image()
    kwargs = {"method": "seam", "scales": [0.5, 1.0, 1.5], "flip": True}
    batched = infer_image(net, image, [2, 7], batch_flips=True, **kwargs)
    calls = net.calls
    separate = infer_image(net, image, [2, 7], batch_flips=False, **kwargs)
    assert calls == 3 and net.calls - calls == 6
    np.testing.assert_allclose(batched, separate, atol=1e-5)
    # A mirrored image gives the mirrored CAMs when both flips are summed.
    mirrored = infer_image(net, np.ascontiguousarray(image[:, ::-1]), [2, 7], **kwargs)
    np.testing.assert_allclose(mirrored, batched[:, :, ::-1], atol=1e-4)


def test_constant_map_normalises_to_zero_and_no_classes_gives_empty():
    """SEAM's rule: values below min + 1e-5 become 0, so a flat map is all 0."""

    class Flat(StubCamNet):
        def forward(self, x):
            n, _, h, w = x.shape
            flat = torch.ones(n, 21, -(-h // 8), -(-w // 8))
            return {"cam": flat, "cam_rv": flat, "proj": flat}

    image = _image()
    assert not infer_image(Flat(), image, [5], method="seam", scales=[1.0, 2.0], flip=True).any()
    assert infer_image(Flat(), image, [], method="seam", scales=[1.0], flip=True).shape == (0, 37, 45)


def test_cam_file_roundtrip_and_validation(tmp_path):
    cams = np.random.default_rng(1).uniform(0, 1, (2, 5, 7)).astype(np.float32)
    save_cams(cam_path(tmp_path, "a"), [4, 9], cams)
    with np.load(cam_path(tmp_path, "a")) as data:
        assert data["classes"].dtype == np.int64 and data["cams"].dtype == np.float16
    classes, loaded = load_cams(tmp_path, "a", [9, 4], (5, 7))
    assert classes.tolist() == [4, 9] and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, cams, atol=1e-3)

    with pytest.raises(InputError, match=r"a\.npz.*class\(es\) \[9\] that image 'a' does not have \[4\]"):
        load_cams(tmp_path, "a", [4], (5, 7))
    with pytest.raises(InputError, match=r"a\.npz.*but image 'a' has \[4, 9, 12\]"):
        load_cams(tmp_path, "a", [4, 9, 12], (5, 7))
    with pytest.raises(InputError, match=r"a\.npz: CAM size \(5, 7\) does not match image size \(6, 7\)"):
        load_cams(tmp_path, "a", [4, 9], (6, 7))
    with pytest.raises(InputError, match=r"b\.npz: CAM file not found"):
        load_cams(tmp_path, "b", [4], (5, 7))
    cam_path(tmp_path, "c").write_bytes(b"not a zip file at all")
    with pytest.raises(InputError, match=r"c\.npz: cannot read CAM file"):
        load_cams(tmp_path, "c")
    np.savez(cam_path(tmp_path, "d"), classes=np.array([3]), cams=np.zeros((2, 5, 7), np.float16))
    with pytest.raises(InputError, match=r"d\.npz: 'cams' must have shape"):
        load_cams(tmp_path, "d")
    np.savez(cam_path(tmp_path, "e"), classes=np.array([3]), cams=np.full((1, 5, 7), np.nan, np.float16))
    with pytest.raises(InputError, match=r"e\.npz: CAMs hold NaN"):
        load_cams(tmp_path, "e")


def test_run_writes_every_split_image_and_resumes(voc, tmp_path, monkeypatch):
    net = StubCamNet()
    monkeypatch.setattr(infer, "_load_net", lambda path: net)
    params = default_params(infer_cam={"splits": ["train", "train_aug", "val"], "scales": [1.0, 0.5]})
    ids = split_ids(voc, ["train", "train_aug", "val"])
    assert len(ids) == len(set(ids)) == len(set(read_ids(voc, "train_aug")) | set(read_ids(voc, "val")))
    out = tmp_path / "cams"
    run_args = args(data=str(voc), checkpoint=str(tmp_path / "unused.pt"), out=str(out))
    (tmp_path / "unused.pt").write_bytes(b"")
    partial = interrupted_run(monkeypatch, infer, run_args, params)
    done = ids[0]
    keep_only(partial, [f"{done}.npz"])
    sentinel = np.zeros((len(read_class_labels(voc)[done]), 40, 40), np.float32)
    save_cams(cam_path(partial, done), read_class_labels(voc)[done], sentinel)
    net.calls = 0
    infer.run(run_args, params)
    assert not partial.exists()
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(ids)
    assert net.calls == 2 * (len(ids) - 1)  # two scales, flips batched; the pre-existing image is not redone
    assert not load_cams(out, done)[1].any()
    labels = read_class_labels(voc)
    for image_id in ids[1:]:
        classes, cams = load_cams(
            out, image_id, labels[image_id], load_image(voc_dirs(voc)["images"] / f"{image_id}.jpg").shape[:2]
        )
        assert cams.max() > 0.99


def test_missing_image_and_labels_name_the_file(voc, tmp_path, monkeypatch):
    monkeypatch.setattr(infer, "_load_net", lambda path: StubCamNet())
    params = default_params(infer_cam={"splits": ["val"], "scales": [1.0]})
    image_id = read_ids(voc, "val")[0]
    broken = tmp_path / "VOC2012"
    import shutil

    shutil.copytree(voc, broken)
    (voc_dirs(broken)["images"] / f"{image_id}.jpg").unlink()
    with pytest.raises(InputError, match=rf"{image_id}\.jpg: image not found"):
        infer.run(args(data=str(broken), checkpoint="x", out=str(tmp_path / "o")), params)
    (voc_dirs(broken)["labels"]).write_text("{}")
    with pytest.raises(InputError, match=r"cls_labels\.json: no image-level labels"):
        infer.run(args(data=str(broken), checkpoint="x", out=str(tmp_path / "o")), params)


@pytest.mark.parametrize("method", ["seam", "eps"])
def test_real_tiny_cam_net_checkpoint(voc, tmp_path, method):
    from ppcseg.models.cam_net import build_cam_net

    cam_params = default_params()["cam"] | {"backbone": "tiny", "method": method, "ppc": True}
    torch.manual_seed(0)
    net = build_cam_net(cam_params, None)
    with torch.no_grad():  # positive class weights on ReLU features: every CAM has a positive peak to normalise
        net.fc8.weight.abs_()
    save_checkpoint(tmp_path / "cam.pt", {"model": net.state_dict()}, net.meta)
    params = default_params(cam=cam_params, infer_cam={"splits": ["val"], "scales": [0.5, 1.0]})
    infer.run(args(data=str(voc), checkpoint=str(tmp_path / "cam.pt"), out=str(tmp_path / "cams")), params)
    labels = read_class_labels(voc)
    for image_id in read_ids(voc, "val"):
        classes, cams = load_cams(tmp_path / "cams", image_id, labels[image_id], (40, 40))
        assert cams.min() >= 0 and cams.max() <= 1 and cams.max() > 0.9
