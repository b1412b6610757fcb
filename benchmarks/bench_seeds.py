"""Seed-evaluation speed: the one-pass 60-threshold sweep against evaluating a single threshold.

    python benchmarks/bench_seeds.py [--images 60] [--repeats 3]

Prints the hardware, both times and their ratio (target: sweep / one threshold <= 3). The data are random CAMs at
VOC size (375 x 500, 1-3 classes, float16-quantised like the CAM files) held in memory, so file reading is not timed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from hardware import hardware

from ppcseg.data.cams import seed_prediction
from ppcseg.evaluation.miou import ConfusionMatrix
from ppcseg.evaluation.seeds import sweep_confusion, sweep_thresholds


def make_images(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        k = int(rng.integers(1, 4))
        classes = np.sort(rng.choice(np.arange(1, 21), size=k, replace=False)).astype(np.int64)
        cams = rng.random((k, 375, 500), dtype=np.float32).astype(np.float16).astype(np.float32)
        gt = rng.choice(np.r_[0, classes, 255], size=(375, 500)).astype(np.uint8)
        images.append((gt, classes, cams))
    return images


def one_threshold(images, threshold: float) -> np.ndarray:
    matrix = ConfusionMatrix()
    for gt, classes, cams in images:
        matrix.update(gt, seed_prediction(classes, cams, threshold))
    return matrix.matrix


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    images = make_images(opts.images)
    thresholds = sweep_thresholds(0.0, 0.6, 0.01)
    assert np.array_equal(sweep_confusion(images[:2], [0.26])[0], one_threshold(images[:2], 0.26))
    single = best_of(opts.repeats, lambda: one_threshold(images, 0.26))
    sweep = best_of(opts.repeats, lambda: sweep_confusion(images, thresholds))
    print(f"hardware: {hardware()}; numpy {np.__version__}")
    print(f"{opts.images} images of 375x500, best of {opts.repeats}")
    print(f"one threshold (argmax + confusion matrix): {single:.3f} s")
    print(f"sweep of {thresholds.size} thresholds (one pass):    {sweep:.3f} s")
    print(
        f"ratio sweep / one threshold: {sweep / single:.2f} (target <= 3; {thresholds.size} separate passes: "
        f"{thresholds.size:.0f})"
    )


if __name__ == "__main__":
    main()
