"""Pixel-to-prototype contrast against the literal per-pixel reference (ppc_reference.py) and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from ppcseg.losses.ppc import VARIANTS, class_prototypes, normalised_cam, pixel_prototype_contrast, pseudo_labels
from tests.losses.ppc_reference import ref_contrast

torch.set_num_threads(1)


def make_inputs(seed: int, variant: str, n: int = 2, d: int = 6, h1: int = 12, g: int = 8, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    # post-ReLU features; channel 0 kept > 0: an all-zero pixel ties all 21 similarities at 0, where the negatives
    # (and so the ~1e12-scaled gradient of F.normalize at 0) depend on the tie-breaking, not on the algorithm
    proj1 = torch.relu(torch.randn(n, d, h1, h1, generator=gen, dtype=dtype))
    proj2 = torch.relu(torch.randn(n, d, g, g, generator=gen, dtype=dtype))
    proj1[:, 0] += 0.05
    proj2[:, 0] += 0.05
    proj1.requires_grad_()
    proj2.requires_grad_()
    cam1 = torch.randn(n, 21, h1, h1, generator=gen, dtype=dtype)
    cam2 = torch.randn(n, 21, g, g, generator=gen, dtype=dtype)
    labels = torch.zeros(n, 21, dtype=dtype)
    bg = VARIANTS[variant].bg_channel
    fg = [k for k in range(21) if k != bg]
    labels[:, bg] = 1
    labels[0, fg[2]] = 1  # shared class
    labels[1, fg[2]] = 1
    labels[0, fg[7]] = 1  # class of image 0 only
    labels[1, fg[int(torch.randint(8, 20, (1,), generator=gen))]] = 1
    # make a few pixels clearly foreground so the pseudo labels are mixed
    cam1[:, fg[2], : h1 // 2] += 3
    cam2[:, fg[2], : g // 2] += 3
    return proj1, proj2, cam1, cam2, labels


def _compare(out, ref, params):
    grads = torch.autograd.grad(out["total"], params)
    ref_grads = torch.autograd.grad(ref["total"], params)
    for key in ("cross_prototype", "cross_pseudo_label", "intra", "total"):
        torch.testing.assert_close(out[key], torch.as_tensor(ref[key], dtype=out[key].dtype), rtol=1e-9, atol=1e-12)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("variant", ["seam", "eps"])
@pytest.mark.parametrize("sampling", ["first", "random"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference(variant, sampling, seed):
    proj1, proj2, cam1, cam2, labels = make_inputs(seed, variant)
    kwargs = {"variant": variant, "sampling": sampling}
    out = pixel_prototype_contrast(
        proj1, proj2, cam1, cam2, labels, generator=torch.Generator().manual_seed(seed), **kwargs
    )
    ref = ref_contrast(proj1, proj2, cam1, cam2, labels, generator=torch.Generator().manual_seed(seed), **kwargs)
    _compare(out, ref, (proj1, proj2))


@pytest.mark.parametrize("variant", ["seam", "eps"])
@pytest.mark.parametrize(
    "switch", ["fix_background_prototype", "mask_prototypes_by_labels", "exclude_positive_from_negatives"]
)
def test_switches_match_loop_reference(variant, switch):
    proj1, proj2, cam1, cam2, labels = make_inputs(3, variant, h1=8)
    out = pixel_prototype_contrast(proj1, proj2, cam1, cam2, labels, variant=variant, **{switch: True})
    ref_switch = {
        "fix_background_prototype": "fix_bg",
        "mask_prototypes_by_labels": "mask_labels",
        "exclude_positive_from_negatives": "exclude_positive",
    }[switch]
    ref = ref_contrast(proj1, proj2, cam1, cam2, labels, variant=variant, sampling="first", **{ref_switch: True})
    _compare(out, ref, (proj1, proj2))


def test_float32_matches_float64():
    proj1, proj2, cam1, cam2, labels = make_inputs(5, "seam", n=4, d=16, h1=20, g=16)
    out64 = pixel_prototype_contrast(proj1, proj2, cam1, cam2, labels)
    out32 = pixel_prototype_contrast(proj1.float(), proj2.float(), cam1.float(), cam2.float(), labels.float())
    assert out32["total"].dtype == torch.float32
    torch.testing.assert_close(out32["total"].double(), out64["total"], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------------------------------


def test_normalisation_keeps_the_minimum_slightly_negative():
    cam = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]], [[-1.0, 3.0], [1.0, 1.0]]]], dtype=torch.float64)
    norm = normalised_cam(cam, bg_channel=1, bg_score=0.2)
    e = 1e-5
    expected0 = torch.tensor([[-e, 1 - e], [2 - e, 4 - e]], dtype=torch.float64) / (4 + e)
    torch.testing.assert_close(norm[0, 0], expected0)
    assert norm[0, 0, 0, 0] < 0  # the [quirk]: not clipped to 0
    assert torch.all(norm[0, 1] == 0.2)


def test_pseudo_labels_by_hand():
    # channel 0 = background (0.2 after normalisation); class 1 present, class 2 absent but strong
    norm = torch.tensor([[[[0.2, 0.2]], [[0.3, 0.1]], [[0.9, 0.9]]]])
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    assert pseudo_labels(norm, labels).tolist() == [[[1, 0]]]


def test_prototype_by_hand():
    # 1 image, 2 channels, 2x2 grid, top-2: channel 1 picks pixels with CAM 0.8 and 0.4
    norm = torch.tensor([[[[0.2, 0.2], [0.2, 0.2]], [[0.8, 0.1], [0.4, 0.0]]]], dtype=torch.float64)
    feats = torch.tensor([[[[1.0, 5.0], [0.0, 7.0]], [[0.0, 5.0], [3.0, 7.0]]]], dtype=torch.float64)
    protos = class_prototypes(norm, feats, torch.ones(1, 2), k=2, bg_channel=0)
    mean = (0.8 * torch.tensor([1.0, 0.0]) + 0.4 * torch.tensor([0.0, 3.0])) / 1.2
    torch.testing.assert_close(protos[1], (mean / mean.norm()).double())


def test_background_prototype_is_the_cpu_topk_tie_break():
    # the official torch.topk tie-break (docs/faithfulness.md): a single-image 16x16 batch takes pixels 160-191 (rows 10-11) for the tied background row
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(1, 4, 16, 16, generator=gen)
    cam = torch.randn(1, 21, 16, 16, generator=gen)
    norm = normalised_cam(cam, bg_channel=0, bg_score=0.2)
    protos = class_prototypes(norm, feats, torch.ones(1, 21), k=32, bg_channel=0)
    expected = feats[0, :, 10:12].reshape(4, -1).mean(dim=1)
    torch.testing.assert_close(protos[0], expected / expected.norm())


def test_uniform_features_by_hand():
    # All pixel features equal: every prototype equals the pixel embedding, every similarity is 1.
    # Cross terms: -log(e^10 / (21 e^10)) = log 21. Intra: log 11 per pixel (positive + 10 negatives).
    # Pseudo labels: 15 pixels of class 1, one background pixel -> C = 2, but the singleton is skipped.
    g = 4
    proj = torch.ones(1, 3, g, g, dtype=torch.float64, requires_grad=True)
    cam = torch.zeros(1, 21, g, g, dtype=torch.float64)
    cam[0, 1] = 1.0
    cam[0, 1, 0, 0] = 0.0
    labels = torch.zeros(1, 21, dtype=torch.float64)
    labels[0, :2] = 1
    out = pixel_prototype_contrast(proj, proj, cam, cam, labels)
    assert out["cross_prototype"].item() == pytest.approx(0.1 * math.log(21))
    assert out["cross_pseudo_label"].item() == pytest.approx(0.1 * math.log(21))
    assert out["intra"].item() == pytest.approx(0.1 * math.log(11) / 2)
    assert out["total"].item() == pytest.approx(0.2 * math.log(21) + 0.05 * math.log(11))


# ---------------------------------------------------------------------------------------------------------------------
# Gradient flow and switches
# ---------------------------------------------------------------------------------------------------------------------


def test_gradient_reaches_projections_only():
    proj1, proj2, cam1, cam2, labels = make_inputs(7, "seam", dtype=torch.float32)
    cam1.requires_grad_()
    cam2.requires_grad_()
    pixel_prototype_contrast(proj1, proj2, cam1, cam2, labels)["total"].backward()
    assert cam1.grad is None and cam2.grad is None
    assert proj1.grad is not None and proj1.grad.abs().sum() > 0
    assert proj2.grad is not None and proj2.grad.abs().sum() > 0


def _views(variant, **switches):
    proj1, proj2, cam1, cam2, labels = make_inputs(11, variant, h1=8)
    const = VARIANTS[variant]
    norm = normalised_cam(cam2, bg_channel=const.bg_channel, bg_score=const.bg_score)
    protos = class_prototypes(
        norm, proj2.detach(), labels, k=64 // const.topk_divisor, bg_channel=const.bg_channel, **switches
    )
    return pseudo_labels(norm, labels), protos, labels, const


@pytest.mark.parametrize("variant", ["seam", "eps"])
def test_fix_background_prototype_changes_only_the_background_prototype(variant):
    labels_off, protos_off, _, const = _views(variant)
    labels_on, protos_on, _, _ = _views(variant, fix_background_prototype=True)
    assert torch.equal(labels_off, labels_on)
    changed = (protos_off - protos_on).abs().amax(dim=1) > 1e-9
    assert changed.nonzero().flatten().tolist() == [const.bg_channel]


@pytest.mark.parametrize("variant", ["seam", "eps"])
def test_mask_prototypes_by_labels_changes_only_partially_present_classes(variant):
    labels_off, protos_off, labels, _ = _views(variant)
    _, protos_on, _, _ = _views(variant, mask_prototypes_by_labels=True)
    partial = (labels > 0).any(dim=0) & ~(labels > 0).all(dim=0)
    changed = (protos_off - protos_on).abs().amax(dim=1) > 1e-9
    assert torch.equal(changed, partial)  # classes in all images or in none keep their prototype


@pytest.mark.parametrize("variant", ["seam", "eps"])
def test_exclude_positive_changes_only_the_intra_term(variant):
    proj1, proj2, cam1, cam2, labels = make_inputs(13, variant)
    off = pixel_prototype_contrast(proj1, proj2, cam1, cam2, labels, variant=variant)
    on = pixel_prototype_contrast(
        proj1, proj2, cam1, cam2, labels, variant=variant, exclude_positive_from_negatives=True
    )
    assert on["cross_prototype"] == off["cross_prototype"]
    assert on["cross_pseudo_label"] == off["cross_pseudo_label"]
    assert on["intra"] != off["intra"]


def test_random_sampling_follows_the_generator():
    proj1, proj2, cam1, cam2, labels = make_inputs(17, "seam")

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return pixel_prototype_contrast(proj1, proj2, cam1, cam2, labels, sampling="random", generator=gen)["intra"]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_rejects_bad_arguments():
    proj1, proj2, cam1, cam2, labels = make_inputs(0, "seam")
    with pytest.raises(ValueError, match="variant"):
        pixel_prototype_contrast(proj1, proj2, cam1, cam2, labels, variant="psa")
    with pytest.raises(ValueError, match="labels"):
        pixel_prototype_contrast(proj1, proj2, cam1, cam2, labels[:, :20])


def test_half_precision_inputs_are_computed_in_float32():
    proj1, proj2, cam1, cam2, labels = make_inputs(19, "eps", dtype=torch.float32)
    ref = pixel_prototype_contrast(proj1, proj2, cam1, cam2, labels, variant="eps")["total"]
    low = [t.detach().bfloat16() for t in (proj1, proj2, cam1, cam2)]
    out = pixel_prototype_contrast(*low, labels, variant="eps")["total"]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("variant", ["seam", "eps"])
def test_cuda_matches_cpu(variant):
    # prototypes are ranked on CPU, so the tied background row picks the same pixels on the GPU
    inputs = make_inputs(23, variant, n=4, d=32, h1=28, g=16, dtype=torch.float32)
    cpu = pixel_prototype_contrast(*inputs, variant=variant)
    gpu_inputs = [t.detach().cuda().requires_grad_(t.requires_grad) for t in inputs]
    gpu = pixel_prototype_contrast(*gpu_inputs, variant=variant, generator=None)
    for key in cpu:
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-4, atol=1e-6)
