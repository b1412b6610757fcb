"""SEAM losses (spec 2.3) and their EPS-route variant (spec 1.9) against loop references and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ppcseg.losses.seam import max_norm, max_onehot, rvmin_loss, seam_losses

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------------------------
# Reference: spec 2.3 written out with loops (bg = index of the background channel, keep = channel max_onehot keeps).
# ---------------------------------------------------------------------------------------------------------------------


def ref_max_norm(x):
    out = torch.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            p = x[n, c].clamp(min=0)
            low, high = p.min(), p.max()
            out[n, c] = (p - low - 1e-5).clamp(min=0) / (high - low + 1e-5)
    return out


def ref_losses(cam1, cam_rv1, cam2, cam_rv2, labels, bg, keep):
    n, c, h, w = cam2.shape
    fg = [k for k in range(c) if k != bg]

    def cls(cam):
        total = 0.0
        for i in range(n):
            for k in fg:
                x = cam[i, k].mean()
                y = labels[i, k]
                total = total - (y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(torch.sigmoid(-x)))
        return total / (n * len(fg))

    def rvmin(cam_rv):
        k = cam_rv.shape[2] * cam_rv.shape[3] // 4
        total = 0.0
        for i in range(n):
            maxima = []
            for yy in range(cam_rv.shape[2]):
                for xx in range(cam_rv.shape[3]):
                    maxima.append(max(cam_rv[i, j, yy, xx] * labels[i, j] for j in fg))
            smallest = sorted(maxima, key=lambda v: v.item())[:k]
            total = total + sum(torch.relu(v) for v in smallest)
        return total / (k * n)

    y = labels[:, :, None, None]
    up = lambda t: F.interpolate(t, size=(h, w), mode="bilinear", align_corners=True)  # noqa: E731
    c1, c2 = up(ref_max_norm(cam1)) * y, ref_max_norm(cam2) * y
    r1, r2 = up(ref_max_norm(cam_rv1)) * y, ref_max_norm(cam_rv2) * y
    er = sum((c1[:, k] - c2[:, k]).abs().sum() for k in fg) / (n * len(fg) * h * w)

    def onehot_target(cam):
        t = cam.detach().clone()
        for i in range(n):
            for yy in range(h):
                for xx in range(w):
                    t[i, bg, yy, xx] = 1 - max(t[i, k, yy, xx] for k in fg)
                    top = max(t[i, k, yy, xx] for k in range(c) if k != keep)
                    for k in range(c):
                        if k != keep and t[i, k, yy, xx] != top:
                            t[i, k, yy, xx] = 0.0
        return t

    k_ecr = (c * h * w * 2) // 10  # floor(0.2 * C * h * w) in integers
    ecr = 0.0
    for other, own in ((c2, r1), (c1, r2)):
        diff = (onehot_target(other) - own).abs()
        per_image = [sorted(diff[i].flatten(), key=lambda v: -v.item())[:k_ecr] for i in range(n)]
        ecr = ecr + sum(sum(v) for v in per_image) / (n * k_ecr)
    return {
        "cls": (cls(cam1) + cls(cam2)) / 2,
        "rvmin": (rvmin(cam_rv1) + rvmin(cam_rv2)) / 2,
        "er": er,
        "ecr": ecr,
    }


def make_inputs(seed, bg, n=2, s1=6, s2=4):
    gen = torch.Generator().manual_seed(seed)
    maps = [torch.randn(n, 21, s, s, generator=gen, dtype=torch.float64) for s in (s1, s1, s2, s2)]
    for m in maps:
        m.requires_grad_()
    labels = (torch.rand(n, 21, generator=gen) < 0.3).double()
    labels[:, bg] = 1
    return (*maps, labels)


@pytest.mark.parametrize(
    ("layout", "fix", "bg", "keep"), [("seam", False, 0, 0), ("eps", False, 20, 0), ("eps", True, 20, 20)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference(layout, fix, bg, keep, seed):
    cam1, cam_rv1, cam2, cam_rv2, labels = make_inputs(seed, bg)
    out = seam_losses(cam1, cam_rv1, cam2, cam_rv2, labels, layout=layout, fix_eps_max_onehot=fix)
    ref = ref_losses(cam1, cam_rv1, cam2, cam_rv2, labels, bg, keep)
    params = (cam1, cam_rv1, cam2, cam_rv2)
    for key in ("cls", "rvmin", "er", "ecr"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-10, atol=1e-12)
        grads = torch.autograd.grad(out[key], params, allow_unused=True, retain_graph=True)
        ref_grads = torch.autograd.grad(ref[key], params, allow_unused=True, retain_graph=True)
        for a, b in zip(grads, ref_grads, strict=True):
            if a is None or b is None:
                assert (a is None or not a.any()) and (b is None or not b.any())
            else:
                torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(out["total"], out["cls"] + out["rvmin"] + out["er"] + out["ecr"])


def test_eps_max_onehot_quirk_changes_only_ecr():
    cam1, cam_rv1, cam2, cam_rv2, labels = make_inputs(4, 20)
    faithful = seam_losses(cam1, cam_rv1, cam2, cam_rv2, labels, layout="eps")
    fixed = seam_losses(cam1, cam_rv1, cam2, cam_rv2, labels, layout="eps", fix_eps_max_onehot=True)
    for key in ("cls", "rvmin", "er"):
        assert faithful[key] == fixed[key]
    assert faithful["ecr"] != fixed["ecr"]


# ---------------------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------------------------------


def test_max_norm_by_hand():
    x = torch.tensor([[[[-1.0, 1.0], [2.0, 3.0]]]])
    e = 1e-5
    # ReLU -> [0, 1, 2, 3]; min 0, max 3; relu(p - e) / (3 + e)
    expected = torch.tensor([[0.0, 1 - e], [2 - e, 3 - e]]) / (3 + e)
    torch.testing.assert_close(max_norm(x)[0, 0], expected)


def test_rvmin_takes_the_quarter_smallest_foreground_maxima():
    # background channel 0 ignored; per-pixel fg maxima (class 2 absent, so masked to 0):
    # [[0.5, -1], [2, 3], [-4, 0.25], [1, 1]] -> 8 pixels, k = 2 smallest: -4, -1 -> ReLU -> 0
    fg1 = torch.tensor([[0.5, -1.0], [2.0, 3.0], [-4.0, 0.25], [1.0, 1.0]])
    cam = torch.stack([torch.full((4, 2), 9.0), fg1, torch.full((4, 2), 7.0)])[None]
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    assert rvmin_loss(cam, labels).item() == 0.0
    # shift everything up by 5: smallest two become 1 and 4 -> mean over k*N = 2.5
    assert rvmin_loss(cam + 5, labels).item() == pytest.approx(2.5)


def test_max_onehot_by_hand():
    x = torch.tensor([[[[0.9]], [[0.3]], [[0.7]], [[0.7]]]])
    torch.testing.assert_close(max_onehot(x, keep_channel=0).flatten(), torch.tensor([0.9, 0.0, 0.7, 0.7]))
    torch.testing.assert_close(max_onehot(x, keep_channel=3).flatten(), torch.tensor([0.9, 0.0, 0.0, 0.7]))


def test_ecr_top_k_count():
    # Views identical and labels all present: ER = 0 and the ECR errors are |max_onehot(c) - r|; make r = 0 so the
    # error is the one-hot target itself: 1 - max_fg on background, the max on one foreground channel per pixel.
    h = w = 2
    cam = torch.zeros(1, 21, h, w, dtype=torch.float64)
    cam[0, 1] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    labels = torch.ones(1, 21, dtype=torch.float64)
    cam_rv = torch.full_like(cam, -1.0)  # max_norm -> 0 everywhere
    out = seam_losses(cam, cam_rv, cam, cam_rv, labels)
    assert out["er"].item() == 0.0
    c1 = max_norm(cam)[0, 1].flatten().tolist()  # about [0, 1/3, 2/3, 1]
    errors = sorted([*c1, *(1 - v for v in c1)], reverse=True)
    k = math.floor(0.2 * 21 * h * w)
    assert k == 16  # more entries than non-zero errors: the rest of the top-k are zeros
    expected = 2 * sum(errors[:k]) / k
    assert out["ecr"].item() == pytest.approx(expected)


def test_classification_loss_by_hand():
    # one image, CAM mean of class 1 = 2, class 2 = -1; labels: class 1 present
    cam = torch.zeros(1, 3, 2, 2)
    cam[0, 1] = 2.0
    cam[0, 2] = -1.0
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    out = seam_losses(cam, cam, cam, cam, labels)
    assert out["cls"].item() == pytest.approx(expected, rel=1e-6)


def test_rejects_mismatched_shapes():
    cam1, cam_rv1, cam2, cam_rv2, labels = make_inputs(0, 0)
    with pytest.raises(ValueError, match="cam2"):
        seam_losses(cam1, cam_rv1, cam2[:, :20], cam_rv2, labels)
    with pytest.raises(ValueError, match="layout"):
        seam_losses(cam1, cam_rv1, cam2, cam_rv2, labels, layout="psa")
