"""Test protocols on a hand-made model: multi-scale + flip averaging and the CRF step, pinned to what the official
wseg test script computes (docs/faithfulness.md): OpenCV bicubic image resize, logits back with aligned corners,
probabilities clipped at 1e-5, the CRF image after the official float32 round trip, argmax over all classes; and the
two switches (`fix_logit_alignment`, `crf_network_classes_only`) giving the previous behaviour."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ppcseg.segment.inference as seg_inference
from ppcseg.config import load_params
from ppcseg.segment.inference import InferenceProtocol, predict_labels, predict_logits

REPO = Path(__file__).resolve().parents[2]

CRF = dict(iters=5, gaussian_sxy=1, gaussian_compat=3, bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4)


class _Preprocessor(nn.Module):
    def __init__(self, mean=(100.0, 110.0, 120.0), std=(50.0, 50.0, 50.0)) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1))


class RampModel(nn.Module):
    """Class 0: the normalised red channel (mirror-equivariant); class 1: a left-to-right ramp whatever the input;
    class 2: 2 * green at stride 2 (exercises the upsampling)."""

    def __init__(self) -> None:
        super().__init__()
        self.data_preprocessor = _Preprocessor()
        self.calls: list[tuple[int, ...]] = []
        self.inputs: list[torch.Tensor] = []

    def encode_decode(self, x: torch.Tensor, metas: list[dict]) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        self.inputs.append(x)
        assert all(meta["img_shape"] == tuple(x.shape[-2:]) for meta in metas)
        n, _, h, w = x.shape
        ramp = torch.linspace(0, 1, w).expand(n, h, w)
        coarse = F.interpolate(2 * x[:, 1:2, ::2, ::2], (h, w), mode="bilinear", align_corners=False)[:, 0]
        return torch.stack([x[:, 0], ramp, coarse], 1)


def _image(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    image.setflags(write=False)  # load_image returns read-only arrays
    return image


def test_single_scale_logits_and_normalisation():
    image = _image()
    logits = predict_logits(RampModel(), image)
    assert logits.shape == (3, 20, 28)
    assert torch.allclose(logits[0], (torch.from_numpy(image[..., 0].astype(np.float32)) - 100) / 50)
    assert torch.allclose(logits[1], torch.linspace(0, 1, 28).expand(20, 28))


def test_flip_is_undone_before_averaging():
    logits = predict_logits(RampModel(), _image(), flip=True)
    ramp = torch.linspace(0, 1, 28).expand(20, 28)
    assert torch.allclose(logits[1], (ramp + ramp.flip(-1)) / 2, atol=1e-6)  # the ramp ignores the input
    assert torch.allclose(logits[0], predict_logits(RampModel(), _image())[0], atol=1e-5)  # equivariant


def test_multi_scale_runs_every_scale_and_returns_image_size():
    model = RampModel()
    logits = predict_logits(model, _image(), scales=(0.5, 1.0, 1.5), flip=True)
    assert model.calls == [(2, 3, 10, 14), (2, 3, 20, 28), (2, 3, 30, 42)]
    assert logits.shape == (3, 20, 28) and torch.isfinite(logits).all()


@pytest.mark.parametrize("seed", range(4))
def test_crf_labels_are_a_subset_of_the_network_labels_with_the_switch(seed):
    image = _image(24, 32, seed)
    protocol = InferenceProtocol(scales=(0.75, 1.0), flip=True, crf_params=CRF, crf_network_classes_only=True)
    before = predict_labels(RampModel(), image, InferenceProtocol(scales=(0.75, 1.0), flip=True))
    after = predict_labels(RampModel(), image, protocol)
    assert after.shape == image.shape[:2] and after.dtype == np.uint8
    assert set(np.unique(after)) <= set(np.unique(before))


@pytest.mark.parametrize("network_classes_only", [False, True])
def test_crf_class_restriction(monkeypatch, network_classes_only):
    """Official: the CRF's argmax runs over all classes, so it may introduce one; the switch forbids that."""
    image = _image()

    def crf_prefers_absent_class(img, probs, settings):
        q = np.zeros_like(probs)
        q[2] = 1.0  # class 2 would win everywhere
        q[0, :, :14] = 0.5
        q[1, :, 14:] = 0.5
        return q

    monkeypatch.setattr(seg_inference, "crf_from_probs", crf_prefers_absent_class)
    model = RampModel()
    model.encode_decode = lambda x, metas: torch.stack(  # class 0 left half, class 1 right half, never class 2
        [torch.ones_like(x[:, 0]), torch.linspace(0, 2, x.shape[-1]).expand_as(x[:, 0]), -torch.ones_like(x[:, 0])], 1
    )
    labels = predict_labels(
        model, image, InferenceProtocol(crf_params=CRF, crf_network_classes_only=network_classes_only)
    )
    if network_classes_only:
        assert (labels[:, :14] == 0).all() and (labels[:, 14:] == 1).all()  # the best class among those present
    else:
        assert (labels == 2).all()


def test_protocol_from_params():
    test = {
        "scales": [0.5, 1.0],
        "flip": True,
        "crf": False,
        "crf_params": CRF,
        "fix_logit_alignment": False,
        "crf_network_classes_only": False,
    }
    assert InferenceProtocol.from_params("single", test) == InferenceProtocol()
    msf = InferenceProtocol.from_params("msf-crf", test)
    assert msf.scales == (0.5, 1.0) and msf.flip and msf.crf_params is None
    assert not msf.fix_logit_alignment and not msf.crf_network_classes_only
    assert InferenceProtocol.from_params("msf-crf", {**test, "crf": True}).crf_params == CRF
    switched = InferenceProtocol.from_params("msf-crf", {**test, "fix_logit_alignment": True})
    assert switched.fix_logit_alignment and switched.settings()["fix_logit_alignment"]
    assert InferenceProtocol.from_params("msf-crf", {**test, "crf_network_classes_only": True}).crf_network_classes_only


def test_default_params_are_the_official_protocol():
    """wseg's segmentation configs: scales 0.5..1.75 with flip and CRF; CRF values as the EPS README gives them
    (DeepLab-v2: pos_w 3, pos_xy_std 1, bi_w 4, bi_xy_std 67, bi_rgb_std 3; 10 iterations); switches off."""
    test = load_params([REPO / "params.yaml"])["segmentation"]["test"]
    assert test["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and test["flip"] and test["crf"]
    assert test["crf_params"] == CRF | {"iters": 10}
    assert not test["fix_logit_alignment"] and not test["crf_network_classes_only"]


def test_images_are_resized_bicubic_by_opencv():
    """The normalised image is resized with cv2 INTER_CUBIC and the exact factor (output round(side * scale))."""
    image = _image(25, 35, seed=3)
    model = RampModel()
    predict_logits(model, image, scales=(0.5, 1.5))
    assert [tuple(x.shape[-2:]) for x in model.inputs] == [(12, 18), (38, 52)]  # 12.5 -> 12, 17.5 -> 18, 52.5 -> 52
    normalised = (image.astype(np.float32) - np.float32([100, 110, 120])) / np.float32(50)
    for x, scale in zip(model.inputs, (0.5, 1.5), strict=True):
        expected = cv2.resize(normalised, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        assert np.abs(x[0].permute(1, 2, 0).numpy() - expected).max() < 1e-5
    # bicubic overshoots at an edge (bilinear never leaves the input's range)
    step = np.zeros((8, 8, 3), np.uint8)
    step[:, 4:] = 255
    model = RampModel()
    predict_logits(model, step, scales=(1.5,))
    low, high = (0 - 100) / 50, (255 - 100) / 50
    assert model.inputs[0][0, 0].min() < low - 0.05 and model.inputs[0][0, 0].max() > high + 0.05


@pytest.mark.parametrize("scales", [(0.5,), (1.5,), (0.5, 0.75, 1.25)])
def test_logits_are_resized_back_with_aligned_corners(scales):
    """Class 1 is a 0..1 ramp over whatever width the network sees: with align_corners=True (official) it comes
    back exactly as the 0..1 ramp over the image; with the switch, as the previous align_corners=False resize."""
    image = _image(20, 28)
    ramp = torch.linspace(0, 1, 28).expand(20, 28)
    assert torch.allclose(predict_logits(RampModel(), image, scales)[1], ramp, atol=1e-6)
    model = RampModel()
    switched = predict_logits(model, image, scales, fix_logit_alignment=True)[1]
    previous = torch.stack(
        [
            F.interpolate(torch.linspace(0, 1, x.shape[-1]).expand(1, 1, *x.shape[-2:]), (20, 28), mode="bilinear")[
                0, 0
            ]
            for x in model.inputs
        ]
    ).mean(0)
    assert torch.allclose(switched, previous, atol=1e-6) and not torch.allclose(switched, ramp, atol=1e-3)


def _capture_crf(monkeypatch) -> dict:
    seen: dict = {}

    def crf(img, probs, settings):
        seen["image"], seen["probs"] = img.copy(), probs.copy()
        return probs

    monkeypatch.setattr(seg_inference, "crf_from_probs", crf)
    return seen


def test_crf_unary_probabilities_are_clipped_at_1e_5(monkeypatch):
    seen = _capture_crf(monkeypatch)
    model = RampModel()
    model.encode_decode = lambda x, metas: torch.stack(
        [40 * torch.ones_like(x[:, 0]), -40 * torch.ones_like(x[:, 0])], 1
    )
    predict_labels(model, _image(), InferenceProtocol(crf_params=CRF))
    assert seen["probs"].min() == np.float32(1e-5) and seen["probs"].max() <= 1.0


def test_crf_image_is_the_official_float32_round_trip(monkeypatch):
    """With the ImageNet mean/std, the official normalise/denormalise round trip (truncated to uint8) lowers 62 red,
    39 green and 36 blue values by one level (e.g. 20 -> 19), and leaves the others (0, 100, 255) as they are."""
    seen = _capture_crf(monkeypatch)
    model = RampModel()
    model.data_preprocessor = _Preprocessor((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    image = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
    predict_labels(model, image, InferenceProtocol(crf_params=CRF))
    shift = image.astype(int) - seen["image"].astype(int)
    assert set(np.unique(shift)) == {0, 1}
    assert (shift == 1).sum(axis=(0, 1)).tolist() == [62, 39, 36]
    flat = seen["image"].reshape(256, 3)
    assert flat[20].tolist() == [19, 19, 19] and flat[100].tolist() == [100] * 3
    assert flat[0].tolist() == [0] * 3 and flat[255].tolist() == [255] * 3
