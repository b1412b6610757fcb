"""Speed of the vectorised PPC contrast loss against a per-pixel loop version of the official algorithm.

Paper-size inputs: batch 8, 128-d projections, view 1 at 56x56 (resized inside to the grid), view 2 and the contrast
grid at 16x16. Times forward + backward of the SEAM variant with ``sampling="first"``; both versions compute the
same value (checked below). Run: ``python benchmarks/bench_ppc_loss.py [--threads 2] [--repeats 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from hardware import hardware

from ppcseg.losses.ppc import VARIANTS, pixel_prototype_contrast

TAU = 0.1


def loop_contrast(proj1, proj2, cam1, cam2, labels, variant="seam"):
    """The official algorithm with its loops made per pixel: one Python iteration per pixel and per class."""
    const = VARIANTS[variant]
    n, d, g, _ = proj2.shape
    proj1 = F.interpolate(proj1, size=(g, g), mode="bilinear", align_corners=True)
    cam1 = F.interpolate(cam1, size=(g, g), mode="bilinear", align_corners=True)
    views = []
    for proj, cam in ((proj1, cam1), (proj2, cam2)):
        with torch.no_grad():
            a = torch.relu(cam.detach())
            norm = torch.empty_like(a)
            for i in range(n):
                for k in range(21):
                    low, high = a[i, k].min(), a[i, k].max()
                    m = torch.where(a[i, k] < low + 1e-5, torch.zeros_like(a[i, k]), a[i, k])
                    norm[i, k] = (m - low - 1e-5) / (high - low + 1e-5)
            norm[:, const.bg_channel] = const.bg_score
            rows = norm.transpose(0, 1).reshape(21, -1)
            feats = proj.detach().permute(0, 2, 3, 1).reshape(-1, d)
            target = []
            for p in range(rows.shape[1]):
                scores = [rows[k, p].item() * labels[p // (g * g), k].item() for k in range(21)]
                target.append(max(range(21), key=lambda k, s=scores: (s[k], -k)))
            top = torch.topk(rows.cpu(), g * g // const.topk_divisor, dim=1)
            protos = []
            for k in range(21):
                w = top.values[k]
                protos.append(F.normalize((w[:, None] * feats[top.indices[k]]).sum(0) / w.sum(), dim=0))
        z = [F.normalize(v, dim=0) for v in proj.permute(0, 2, 3, 1).reshape(-1, d)]
        views.append((z, target, torch.stack(protos)))
    (z1, y1, q1), (z2, y2, q2) = views

    def nll(z, q, t):
        logits = q @ z / TAU
        return -(logits[t] - torch.logsumexp(logits, 0))

    def mean_nll(zs, q, ts):
        return sum(nll(z, q, t) for z, t in zip(zs, ts, strict=True)) / len(zs)

    def intra(zs, q, ts):
        losses, sims = [], []
        for z, t in zip(zs, ts, strict=True):
            s = q @ z
            neg = torch.topk(s.detach(), 13).indices[3:]
            losses.append(-(s[t] / TAU - torch.logsumexp(torch.cat([s[t : t + 1], s[neg]]) / TAU, 0)))
            sims.append((s[t].item() + 1) / 2)
        present = sorted(set(ts))
        total = 0.0
        for c in present:
            members = [i for i, t in enumerate(ts) if t == c]
            if len(members) < 2:
                continue
            half, end = len(members) // 2, int(len(members) * 0.6)
            hard = sorted(members, key=lambda i: sims[i])[end - half : end]
            chosen = members[:half] + hard
            total = total + sum(losses[i] for i in chosen) / len(chosen)
        return total / len(present)

    w = const.weight
    cp = w * (mean_nll(z1, q2, y1) + mean_nll(z2, q1, y2)) / 2
    cc = w * (mean_nll(z1, q1, y2) + mean_nll(z2, q2, y1)) / 2
    return cp + cc + w * (intra(z1, q1, y1) + intra(z2, q2, y2)) / 2


def make_inputs(seed=0, n=8, d=128, h1=56, g=16):
    gen = torch.Generator().manual_seed(seed)
    proj1 = torch.relu(torch.randn(n, d, h1, h1, generator=gen)).requires_grad_()
    proj2 = torch.relu(torch.randn(n, d, g, g, generator=gen)).requires_grad_()
    cam1 = torch.randn(n, 21, h1, h1, generator=gen)
    cam2 = torch.randn(n, 21, g, g, generator=gen)
    labels = (torch.rand(n, 21, generator=gen) < 0.1).float()
    labels[:, 0] = 1
    labels[torch.arange(n), torch.randint(1, 21, (n,), generator=gen)] = 1
    return proj1, proj2, cam1, cam2, labels


def timed(fn, inputs, repeats):
    times, value = [], None
    for _ in range(repeats):
        for t in inputs[:2]:
            t.grad = None
        start = time.perf_counter()
        value = fn(*inputs)
        value.backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="runs of the vectorised loss (loop: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = make_inputs()

    def vectorised(*xs):
        return pixel_prototype_contrast(*xs)["total"]

    timed(vectorised, inputs, 2)  # warm-up
    t_vec, v_vec = timed(vectorised, inputs, args.repeats)
    t_loop, v_loop = timed(loop_contrast, inputs, 2)
    print(f"hardware: {hardware()}")
    print("inputs: batch 8, D=128, view 1 56x56 -> 16x16 grid, view 2 16x16, SEAM variant, forward + backward")
    print(f"vectorised: {t_vec * 1e3:9.2f} ms (median of {args.repeats})  loss {v_vec:.6f}")
    print(f"loop      : {t_loop * 1e3:9.2f} ms (median of 2)  loss {v_loop:.6f}")
    print(f"speed-up  : {t_loop / t_vec:9.1f}x (target >= 20x)")
    if abs(v_vec - v_loop) > 1e-4 * max(1.0, abs(v_loop)):
        raise SystemExit(f"values differ: {v_vec} vs {v_loop}")


if __name__ == "__main__":
    main()
