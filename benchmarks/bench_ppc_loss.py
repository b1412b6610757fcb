"""Speed of the vectorised PPC contrast loss against the tests' per-pixel loop reference (tests/losses/ppc_reference.py).

Paper-size inputs: batch 8, 128-d projections, view 1 at 56x56 (resized inside to the grid), view 2 and the contrast
grid at 16x16. Times forward + backward of the SEAM variant with ``sampling="first"``; both versions compute the
same value (checked below). Run: ``python benchmarks/bench_ppc_loss.py [--threads 2] [--repeats 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from hardware import hardware

from ppcseg.config import REPO_ROOT
from ppcseg.losses.ppc import pixel_prototype_contrast


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

    sys.path.insert(0, str(REPO_ROOT))  # the loop reference is the tests' (one reference for both)
    from tests.losses.ppc_reference import ref_contrast

    def vectorised(*xs):
        return pixel_prototype_contrast(*xs, sampling="first")["total"]

    def loop_contrast(*xs):
        return ref_contrast(*xs, variant="seam", sampling="first")["total"]

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
