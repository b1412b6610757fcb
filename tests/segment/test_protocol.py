"""Test protocols on a hand-made model: multi-scale + flip averaging, CRF restricted to the predicted label set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ppcseg.segment.inference as seg_inference
from ppcseg.segment.inference import InferenceProtocol, predict_labels, predict_logits

CRF = dict(iters=5, gaussian_sxy=1, gaussian_compat=3, bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4)


class _Preprocessor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([100.0, 110.0, 120.0]).view(3, 1, 1))
        self.register_buffer("std", torch.tensor([50.0, 50.0, 50.0]).view(3, 1, 1))


class RampModel(nn.Module):
    """Class 0: the normalised red channel (mirror-equivariant); class 1: a left-to-right ramp whatever the input;
    class 2: 2 * green at stride 2 (exercises the upsampling)."""

    def __init__(self) -> None:
        super().__init__()
        self.data_preprocessor = _Preprocessor()
        self.calls: list[tuple[int, ...]] = []

    def encode_decode(self, x: torch.Tensor, metas: list[dict]) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
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
def test_crf_labels_are_a_subset_of_the_network_labels(seed):
    image = _image(24, 32, seed)
    protocol = InferenceProtocol(scales=(0.75, 1.0), flip=True, crf_params=CRF)
    before = predict_labels(RampModel(), image, InferenceProtocol(scales=(0.75, 1.0), flip=True))
    after = predict_labels(RampModel(), image, protocol)
    assert after.shape == image.shape[:2] and after.dtype == np.uint8
    assert set(np.unique(after)) <= set(np.unique(before))


def test_crf_cannot_introduce_a_class(monkeypatch):
    image = _image()

    def crf_prefers_absent_class(img, probs, **kwargs):
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
    labels = predict_labels(model, image, InferenceProtocol(crf_params=CRF))
    assert (labels[:, :14] == 0).all() and (labels[:, 14:] == 1).all()  # the best class among those present


def test_protocol_from_params():
    test = {"scales": [0.5, 1.0], "flip": True, "crf": False, "crf_params": CRF}
    assert InferenceProtocol.from_params("single", test) == InferenceProtocol()
    msf = InferenceProtocol.from_params("msf-crf", test)
    assert msf.scales == (0.5, 1.0) and msf.flip and msf.crf_params is None
    assert InferenceProtocol.from_params("msf-crf", {**test, "crf": True}).crf_params == CRF
