"""The PPC contrast loss written out with Python loops over pixels, classes and prototypes: the reference that the
vectorised `ppcseg.losses.ppc` is compared with (tests/losses/test_ppc.py) and timed against
(benchmarks/bench_ppc_loss.py). Literal and slow on purpose; the official quirks it follows are listed in docs/faithfulness.md."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ppcseg.losses.ppc import VARIANTS

TAU = 0.1


def ref_normalise(cam: torch.Tensor, bg: int, bg_score: float) -> torch.Tensor:
    out = torch.empty_like(cam)
    for n in range(cam.shape[0]):
        for k in range(cam.shape[1]):
            a = cam[n, k].clamp(min=0)
            low, high = a.min().item(), a.max().item()
            a = torch.where(a < low + 1e-5, torch.zeros_like(a), a)
            out[n, k] = (a - low - 1e-5) / (high - low + 1e-5)
        out[n, bg] = bg_score
    return out


def ref_view(proj, cam, labels, const, fix_bg, mask_labels):
    """Pixel list, pseudo labels and prototypes of one view (proj, cam already at the common grid)."""
    n, d, g, _ = proj.shape
    c = cam.shape[1]
    norm = ref_normalise(cam, const.bg_channel, const.bg_score)
    pixels = [(b, y, x) for b in range(n) for y in range(g) for x in range(g)]  # raster order, image-major
    feats = [proj[b, :, y, x] for b, y, x in pixels]
    target = []
    for b, y, x in pixels:
        best, best_k = None, None
        for k in range(c):
            score = norm[b, k, y, x].item() * labels[b, k].item()
            if best is None or score > best:
                best, best_k = score, k
        target.append(best_k)
    k_top = g * g // const.topk_divisor
    protos = []
    for k in range(c):
        values = [norm[b, k, y, x].item() for b, y, x in pixels]
        if fix_bg and k == const.bg_channel:
            values = []
            for b, y, x in pixels:
                fg = [norm[b, j, y, x].item() for j in range(c) if j != k and labels[b, j] > 0]
                values.append(1.0 - max([0.0] + fg))
        candidates = list(range(len(pixels)))
        if mask_labels and any(labels[b, k] > 0 for b in range(n)):
            candidates = [i for i in candidates if labels[pixels[i][0], k] > 0]
        if fix_bg and k == const.bg_channel:
            kth = sorted(values, reverse=True)[k_top - 1]
            chosen = [i for i in candidates if values[i] >= kth]  # ties at the K-th value all kept
        elif len(set(values[i] for i in candidates)) == 1:
            # a fully tied row: the official code's choice is torch.topk's on CPU
            row = torch.tensor([values[i] for i in candidates], dtype=torch.float32)
            chosen = [candidates[j] for j in torch.topk(row, k_top).indices.tolist()]
        else:
            chosen = sorted(candidates, key=lambda i: -values[i])[:k_top]
        num = sum(values[i] * feats[i].detach() for i in chosen)
        den = sum(values[i] for i in chosen)
        p = num / den
        protos.append(p / max(p.norm().item(), 1e-12))
    z = [f / torch.clamp(f.norm(), min=1e-12) for f in feats]
    return z, target, protos


def ref_nll(z, protos, t):
    logits = [torch.dot(z, q) / TAU for q in protos]
    return -torch.log(torch.exp(logits[t]) / sum(torch.exp(v) for v in logits))


def ref_intra(z, target, protos, keys, exclude_positive):
    pix_loss = []
    sims = []
    for zi, t in zip(z, target, strict=True):
        s = [torch.dot(zi, q) for q in protos]
        order = sorted(range(len(protos)), key=lambda k: -s[k].item())
        if exclude_positive:
            order = [k for k in order if k != t]
        neg = order[3:13]
        pos = torch.exp(s[t] / TAU)
        pix_loss.append(-torch.log(pos / (pos + sum(torch.exp(s[k] / TAU) for k in neg))))
        sims.append((s[t].item() + 1) / 2)
    classes = sorted(set(target))
    total = 0.0
    for c in classes:
        members = [i for i, t in enumerate(target) if t == c]
        n_c = len(members)
        if n_c < 2:
            continue
        drawn = sorted(members, key=lambda i: keys[i])[: n_c // 2]
        by_sim = sorted(members, key=lambda i: sims[i])
        end = int(n_c * 0.6)
        hard = by_sim[end - n_c // 2 : end]
        chosen = drawn + hard
        total = total + sum(pix_loss[i] for i in chosen) / len(chosen)
    return total / len(classes)


def ref_contrast(
    proj1,
    proj2,
    cam1,
    cam2,
    labels,
    *,
    variant,
    sampling,
    generator=None,
    fix_bg=False,
    mask_labels=False,
    exclude_positive=False,
):
    const = VARIANTS[variant]
    g = proj2.shape[-1]
    p1 = F.interpolate(proj1, size=(g, g), mode="bilinear", align_corners=True)
    c1 = F.interpolate(cam1.detach(), size=(g, g), mode="bilinear", align_corners=True)
    z1, y1, q1 = ref_view(p1, c1, labels, const, fix_bg, mask_labels)
    z2, y2, q2 = ref_view(proj2, cam2.detach(), labels, const, fix_bg, mask_labels)
    n_pix = len(z1)
    mean = lambda terms: sum(terms) / n_pix  # noqa: E731
    cp = (
        const.weight
        * (
            mean(ref_nll(z, q2, t) for z, t in zip(z1, y1, strict=True))
            + mean(ref_nll(z, q1, t) for z, t in zip(z2, y2, strict=True))
        )
        / 2
    )
    cc = (
        const.weight
        * (
            mean(ref_nll(z, q1, t) for z, t in zip(z1, y2, strict=True))
            + mean(ref_nll(z, q2, t) for z, t in zip(z2, y1, strict=True))
        )
        / 2
    )
    keys = []
    for _ in range(2):
        keys.append(list(range(n_pix)) if sampling == "first" else torch.rand(n_pix, generator=generator).tolist())
    intra = (
        const.weight
        * (ref_intra(z1, y1, q1, keys[0], exclude_positive) + ref_intra(z2, y2, q2, keys[1], exclude_positive))
        / 2
    )
    return {"cross_prototype": cp, "cross_pseudo_label": cc, "intra": intra, "total": cp + cc + intra}
