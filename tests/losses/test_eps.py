"""EPS saliency loss (spec section 3) against a per-pixel loop reference and a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ppcseg.losses.eps import saliency_loss

torch.set_num_threads(1)


def ref_saliency_loss(cam, saliency, labels, tau, lam):
    n, c, h, w = cam.shape
    sal = F.interpolate(saliency, size=(h, w), mode="nearest")
    total = 0.0
    for i in range(n):
        prob = torch.softmax(cam[i], dim=0)
        present = [k for k in range(20) if labels[i, k] > 0]
        salient = []
        for k in present:
            inter = sum(round(prob[k, y, x].item()) * round(sal[i, 0, y, x].item()) for y in range(h) for x in range(w))
            area = sum(round(prob[k, y, x].item()) for y in range(h) for x in range(w))
            salient.append(inter / (area + 1e-4) > tau)
        for y in range(h):
            for x in range(w):
                fg = sum((prob[k, y, x] for k, s in zip(present, salient, strict=True) if s), torch.tensor(0.0))
                other = sum((prob[k, y, x] for k, s in zip(present, salient, strict=True) if not s), torch.tensor(0.0))
                bg = 1 - (prob[20, y, x] + other)
                total = total + (lam * fg + (1 - lam) * bg - sal[i, 0, y, x]) ** 2
    return total / (n * h * w)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("label_width", [20, 21])
def test_matches_loop_reference(seed, label_width):
    gen = torch.Generator().manual_seed(seed)
    cam = (3 * torch.randn(2, 21, 5, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    cam.data[:, 3, :3] += 6  # a confident class so the overlap test has both outcomes
    cam.data[:, 7, 3:] += 6
    saliency = torch.zeros(2, 1, 10, 10, dtype=torch.float64)
    saliency[:, :, :6] = torch.rand(2, 1, 6, 10, generator=gen, dtype=torch.float64) * 0.5 + 0.5
    labels = torch.zeros(2, label_width, dtype=torch.float64)
    labels[:, [3, 7]] = 1
    labels[1, 11] = 1
    out = saliency_loss(cam, saliency, labels)
    ref = ref_saliency_loss(cam, saliency, labels, 0.4, 0.5)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    (grad,) = torch.autograd.grad(out, cam)
    (ref_grad,) = torch.autograd.grad(ref, cam)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-12)


def test_hand_computed():
    # 1 image, 1x2 CAM. Pixel 0: class 0 logit log(8), others 0 -> P_0 = 8/28, P_bg = 1/28.
    # Pixel 1: all logits 0 -> P = 1/21 each. round(P_0) = [0, 0] -> overlap 0 -> class 0 present but not salient.
    cam = torch.zeros(1, 21, 1, 2, dtype=torch.float64)
    cam[0, 0, 0, 0] = math.log(8)
    sal = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    labels = torch.zeros(1, 20)
    labels[0, 0] = 1
    # fg = 0 everywhere; bg = 1 - (P_bg + P_0)
    bg = [1 - (1 / 28 + 8 / 28), 1 - 2 / 21]
    expected = ((0.5 * bg[0] - 1.0) ** 2 + (0.5 * bg[1] - 0.0) ** 2) / 2
    assert saliency_loss(cam, sal, labels).item() == pytest.approx(expected)
    # Make class 0 win pixel 0 (logit log(40): P_0 = 40/60 rounds to 1) -> overlap 1/(1 + 1e-4) > 0.4 -> salient.
    cam[0, 0, 0, 0] = math.log(40)
    fg = [40 / 60, 1 / 21]
    bg = [1 - 1 / 60, 1 - 1 / 21]
    expected = sum((0.5 * f + 0.5 * b - s) ** 2 for f, b, s in zip(fg, bg, [1.0, 0.0], strict=True)) / 2
    assert saliency_loss(cam, sal, labels).item() == pytest.approx(expected)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="channels"):
        saliency_loss(torch.zeros(1, 20, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 20))
    with pytest.raises(ValueError, match="labels"):
        saliency_loss(torch.zeros(1, 21, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 19))
