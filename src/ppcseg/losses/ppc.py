"""Pixel-to-prototype contrast (PPC, Du et al., CVPR 2022) as the official code computes it.

The official contrast loss, SEAM and EPS variants (docs/faithfulness.md). One call computes, for a batch of two
views, the pseudo labels and the 21 batch-level prototypes of each view (both constants) and the three contrast terms:

* ``cross_prototype``: a pixel against the *other* view's prototypes, labelled with its own view's pseudo label;
* ``cross_pseudo_label``: a pixel against its *own* view's prototypes, labelled with the other view's pseudo label;
* ``intra``: a pixel against its own view's positive and its semi-hard negatives (prototype ranks 4-13), averaged
  per class over a "random" half of the class's pixels plus the 10-60 % least-similar band, summed over the classes
  with at least two pixels and divided by the number of classes present (singletons included).

Faithful details kept on purpose ([quirk] marks; docs/faithfulness.md):

* min-max normalisation leaves the minimum slightly negative instead of 0;
* the background channel is the constant background score, so its prototype comes from the pixels ``torch.topk``
  returns for a fully tied row. The prototype ranking always runs on CPU so that the tie-breaking (and with it the
  background prototype) is the same on every device, and matches the official code's on CPU (pixels 160-191 of a
  single-image 16x16 batch);
* prototypes rank the pixels of the whole batch whatever the image labels say;
* the positive is not removed before ranking the semi-hard negatives, so it may appear twice in the denominator;
* the class count ``C`` includes classes with a single pixel although those are skipped.

Deviations that do not change the loss as a function of its inputs:

* the official code draws a "random 10 of 21" negative set per pixel with Python's ``random.sample`` and never uses
  it; those draws are not reproduced, so the Python RNG stream differs from the official run;
* the "random half" of hard pixel sampling is drawn with a torch generator (``sampling="random"``) or taken as the
  first half of the class's pixels in raster order (``sampling="first"``, deterministic) instead of ``random.sample``;
* the hard band sorts pixels by similarity with a stable sort (the official code uses ``topk``, whose order among
  exactly tied similarities is implementation defined);
* pseudo labels are the arg-max of the label-masked scores without the official softmax, which is monotone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "TAU",
    "VARIANTS",
    "ContrastVariant",
    "class_prototypes",
    "normalised_cam",
    "pixel_prototype_contrast",
    "pseudo_labels",
]

TAU = 0.1  # hard-coded temperature at every site of the official code
NUM_CHANNELS = 21
# Semi-hard negatives: prototype ranks 4-13 (1-based) of the similarity ranking, i.e. slice [3:13].
_SEMI_HARD_SKIP = 3
_SEMI_HARD_END = 13
_NORM_EPS = 1e-5


@dataclass(frozen=True)
class ContrastVariant:
    """Constants that differ between the SEAM and EPS versions of the contrast loss."""

    bg_channel: int  # index of the background channel in the 21-channel layout
    bg_score: float  # constant normalised CAM value of the background when labelling pixels
    topk_divisor: int  # prototype top-K = g*g // topk_divisor (one image's grid, ranked over the batch)
    weight: float  # weight of each of the three terms


VARIANTS: dict[str, ContrastVariant] = {
    "seam": ContrastVariant(bg_channel=0, bg_score=0.2, topk_divisor=8, weight=0.1),
    "eps": ContrastVariant(bg_channel=NUM_CHANNELS - 1, bg_score=0.1, topk_divisor=16, weight=0.1),
}


def normalised_cam(cam: Tensor, *, bg_channel: int, bg_score: float) -> Tensor:
    """Spec 1.5 steps 1-2: per (image, channel) min-max normalised ReLU(CAM), background set to ``bg_score``.

    Entries below min + 1e-5 are zeroed *before* the shift, so they end at -(min + 1e-5) / (max - min + 1e-5), not 0.
    """
    cam = F.relu(cam)
    flat = cam.flatten(2)
    low = flat.amin(dim=2)[..., None, None]
    high = flat.amax(dim=2)[..., None, None]
    cam = torch.where(cam < low + _NORM_EPS, torch.zeros_like(cam), cam)
    norm = (cam - low - _NORM_EPS) / (high - low + _NORM_EPS)
    norm[:, bg_channel] = bg_score
    return norm


def pseudo_labels(norm_cam: Tensor, labels: Tensor) -> Tensor:
    """Spec 1.5 step 3: arg-max over channels of the label-masked normalised CAM; (N, 21, g, g) -> (N, g, g) int64."""
    return (norm_cam * labels[:, :, None, None]).argmax(dim=1)


def class_prototypes(
    norm_cam: Tensor,
    features: Tensor,
    labels: Tensor,
    *,
    k: int,
    bg_channel: int,
    fix_background_prototype: bool = False,
    mask_prototypes_by_labels: bool = False,
) -> Tensor:
    """Spec 1.6: one L2-normalised prototype per channel, the CAM-weighted mean of the batch's top-``k`` pixels.

    ``norm_cam`` (N, C, g, g) from :func:`normalised_cam`; ``features`` (N, D, g, g) detached, un-normalised; returns
    (C, D). The switches change only what they name:

    * ``fix_background_prototype``: the background channel is ranked and weighted by b = 1 - max(0, normalised CAM
      of the image's present foreground classes), so the prototype averages the pixels least covered by any present
      class instead of the pixels ``topk`` picks from a tied row. Many pixels share b = 1 (no present class fires),
      so the set is every pixel with b >= the K-th largest b: ties are all kept, which makes it independent of
      tie-breaking and of the image order;
    * ``mask_prototypes_by_labels``: a class's top-K ranks only pixels of images labelled with it. Classes absent from
      the whole batch keep the unmasked ranking, so they still give a prototype that acts as a negative.
    """
    n, c, h, w = norm_cam.shape
    scores = norm_cam.transpose(0, 1).reshape(c, n * h * w)
    feats = features.permute(0, 2, 3, 1).reshape(n * h * w, -1)
    ranking = scores
    if mask_prototypes_by_labels:
        has_class = (labels > 0).T  # (C, N)
        in_batch = has_class.any(dim=1, keepdim=True)
        keep = (has_class | ~in_batch).repeat_interleave(h * w, dim=1)
        ranking = scores.masked_fill(~keep, float("-inf"))
    # CPU topk: its tie-breaking on the constant background row defines the faithful background prototype.
    index = torch.topk(ranking.detach().cpu().contiguous(), k, dim=1).indices.to(norm_cam.device)
    weights = scores.gather(1, index)  # (C, k)
    proto = (weights[..., None] * feats[index]).sum(dim=1) / weights.sum(dim=1, keepdim=True)
    if fix_background_prototype:
        proto[bg_channel] = _background_prototype(norm_cam, feats, labels, k=k, bg_channel=bg_channel)
    return F.normalize(proto, dim=-1)


def _background_prototype(norm_cam: Tensor, feats: Tensor, labels: Tensor, *, k: int, bg_channel: int) -> Tensor:
    """Un-normalised background prototype of ``fix_background_prototype`` (see :func:`class_prototypes`)."""
    fg = torch.ones(norm_cam.shape[1], dtype=torch.bool, device=norm_cam.device)
    fg[bg_channel] = False
    present_fg = (labels[:, fg] > 0)[:, :, None, None]
    fg_cam = norm_cam[:, fg].masked_fill(~present_fg, float("-inf"))
    # clamp: an image without foreground labels (-inf) is all background; slightly negative minima count as 0
    bg_score = (1.0 - fg_cam.amax(dim=1).clamp(min=0.0)).reshape(-1)
    weights = torch.where(bg_score >= torch.topk(bg_score, k).values[-1], bg_score, torch.zeros_like(bg_score))
    return (weights[:, None] * feats).sum(dim=0) / weights.sum()


def _prototype_nll(z: Tensor, prototypes: Tensor, target: Tensor) -> Tensor:
    """Mean over pixels of -log softmax(z . q / tau)[target] over all prototypes (cross-view terms)."""
    return F.cross_entropy(z @ prototypes.T / TAU, target)


def _within_class_rank(classes: Tensor, key: Tensor, counts: Tensor) -> Tensor:
    """0-based rank of each pixel among the pixels of its class, ordered by ``key`` ascending (stable)."""
    by_key = torch.argsort(key, stable=True)
    order = by_key[torch.argsort(classes[by_key], stable=True)]
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel(), device=order.device)
    class_start = torch.cumsum(counts, 0) - counts
    return position - class_start[classes]


def _intra_view(
    z: Tensor,
    prototypes: Tensor,
    target: Tensor,
    *,
    sampling: str,
    generator: torch.Generator | None,
    exclude_positive: bool,
) -> Tensor:
    """Spec 1.7 intra-view term of one view, before the 0.1 weight: Σ_{c: n_c >= 2} L_c / C."""
    sim = z @ prototypes.T  # (P, C)
    positive = sim.gather(1, target[:, None])  # (P, 1)
    with torch.no_grad():
        ranking = sim.scatter(1, target[:, None], float("-inf")) if exclude_positive else sim
        negatives = torch.topk(ranking, _SEMI_HARD_END, dim=1).indices[:, _SEMI_HARD_SKIP:]
    logits = torch.cat([positive, sim.gather(1, negatives)], dim=1) / TAU
    pixel_loss = torch.logsumexp(logits, dim=1) - logits[:, 0]

    with torch.no_grad():
        n_pix = target.numel()
        counts = torch.bincount(target, minlength=prototypes.shape[0])
        n_c = counts[target]
        half = n_c // 2
        # float product as in the official int(n * 0.6); equals floor(3n / 5) for every n checked up to 2e5
        band_end = torch.floor(n_c.to(torch.float64) * 0.6).to(torch.int64)
        similarity = (positive[:, 0] + 1) / 2
        sim_rank = _within_class_rank(target, similarity, counts)
        hard = (sim_rank >= band_end - half) & (sim_rank < band_end)
        if sampling == "first":
            key = torch.arange(n_pix, device=z.device)
        else:
            gen_device = generator.device if generator is not None else z.device
            key = torch.rand(n_pix, generator=generator, device=gen_device).to(z.device)
        drawn = _within_class_rank(target, key, counts) < half
        n_classes = (counts > 0).sum()
        # Each class's mean runs over 2 * floor(n_c / 2) selections; a pixel in both sets counts twice.
        weight = (hard.to(z.dtype) + drawn.to(z.dtype)) / (2 * half).clamp(min=1).to(z.dtype)
        weight = torch.where(n_c >= 2, weight, torch.zeros_like(weight)) / n_classes.to(z.dtype)
    return (weight * pixel_loss).sum()


def pixel_prototype_contrast(
    proj1: Tensor,
    proj2: Tensor,
    cam1: Tensor,
    cam2: Tensor,
    labels: Tensor,
    *,
    variant: str = "seam",
    sampling: str = "first",
    generator: torch.Generator | None = None,
    fix_background_prototype: bool = False,
    mask_prototypes_by_labels: bool = False,
    exclude_positive_from_negatives: bool = False,
) -> dict[str, Tensor]:
    """The three PPC contrast terms (each weighted as in the official code) and their sum.

    ``proj1`` (N, D, h, w) and ``proj2`` (N, D, g, g): post-ReLU projections of view 1 and view 2; ``cam1``/``cam2``:
    the PCM-refined CAMs at the same resolutions, 21 channels in the variant's layout (``"seam"``: background first,
    ``"eps"``: background last); ``labels`` (N, 21) multi-hot in that layout with the background entry set. View 1 is
    bilinearly resized (``align_corners=True``) to view 2's grid. Gradients reach ``proj1``/``proj2`` only.

    ``sampling``: ``"first"`` takes the first floor(n/2) pixels of a class in raster order as the "random half" of
    hard pixel sampling; ``"random"`` draws them uniformly without replacement with ``generator``. The three ``fix``/
    ``mask``/``exclude`` switches (default off = faithful) are the [quirk] fixes of docs/faithfulness.md; see :func:`class_prototypes`
    for the first two. ``exclude_positive_from_negatives`` ranks the 20 other prototypes and takes their ranks 4-13.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if sampling not in ("first", "random"):
        raise ValueError(f"sampling must be 'first' or 'random', got {sampling!r}")
    const = VARIANTS[variant]
    n, _, g, g_w = proj2.shape
    for name, t in (("proj1", proj1), ("proj2", proj2), ("cam1", cam1), ("cam2", cam2)):
        if t.dim() != 4 or t.shape[0] != n:
            raise ValueError(f"{name} must be (N, C, H, W) with N={n}, got {tuple(t.shape)}")
    if cam1.shape[1] != NUM_CHANNELS or cam2.shape[1] != NUM_CHANNELS or labels.shape != (n, NUM_CHANNELS):
        raise ValueError(f"cam1/cam2 need {NUM_CHANNELS} channels and labels shape ({n}, {NUM_CHANNELS})")
    if cam1.shape[-2:] != proj1.shape[-2:] or cam2.shape[-2:] != proj2.shape[-2:]:
        raise ValueError("each CAM must have its projection's spatial size")

    dtype = torch.promote_types(proj2.dtype, torch.float32)  # half/bfloat16 inputs under autocast
    grid = (g, g_w)
    proj1 = F.interpolate(proj1.to(dtype), size=grid, mode="bilinear", align_corners=True)
    proj2 = proj2.to(dtype)
    k = g * g_w // const.topk_divisor
    if k < 1:
        raise ValueError(f"a {g}x{g_w} grid gives prototype top-K = 0 for variant {variant!r}; use a larger view 2")
    labels = labels.detach().to(device=proj2.device, dtype=dtype)

    views = []
    for proj, cam in ((proj1, cam1), (proj2, cam2)):
        with torch.no_grad():
            cam = F.interpolate(
                cam.detach().to(device=proj.device, dtype=dtype), size=grid, mode="bilinear", align_corners=True
            )
            norm = normalised_cam(cam, bg_channel=const.bg_channel, bg_score=const.bg_score)
            target = pseudo_labels(norm, labels).reshape(-1)
            protos = class_prototypes(
                norm,
                proj.detach(),
                labels,
                k=k,
                bg_channel=const.bg_channel,
                fix_background_prototype=fix_background_prototype,
                mask_prototypes_by_labels=mask_prototypes_by_labels,
            )
        z = F.normalize(proj.permute(0, 2, 3, 1).reshape(-1, proj.shape[1]), dim=-1)
        views.append((z, protos, target))
    (z1, q1, y1), (z2, q2, y2) = views

    cross_prototype = const.weight * (_prototype_nll(z1, q2, y1) + _prototype_nll(z2, q1, y2)) / 2
    cross_pseudo_label = const.weight * (_prototype_nll(z1, q1, y2) + _prototype_nll(z2, q2, y1)) / 2
    intra_kwargs = {
        "sampling": sampling,
        "generator": generator,
        "exclude_positive": exclude_positive_from_negatives,
    }
    intra = const.weight * (_intra_view(z1, q1, y1, **intra_kwargs) + _intra_view(z2, q2, y2, **intra_kwargs)) / 2
    return {
        "cross_prototype": cross_prototype,
        "cross_pseudo_label": cross_pseudo_label,
        "intra": intra,
        "total": cross_prototype + cross_pseudo_label + intra,
    }
