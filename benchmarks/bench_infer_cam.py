"""CAM inference speed: both flips of a scale as one batch of 2 against one forward pass per (scale, flip).

    python benchmarks/bench_infer_cam.py [--backbone tiny|resnet38|resnet50|resnet101] [--method seam|eps]
                                         [--images 8] [--size 375 500]

Prints the hardware and images/s of both ways on the same randomly initialised CAM network (GPU when present).
The paper's setting is 4 scales x flip on VOC images (about 375 x 500) with ResNet-38.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from hardware import hardware

from ppcseg.cam.infer import infer_image
from ppcseg.models.cam_net import build_cam_net

SCALES = (0.5, 1.0, 1.5, 2.0)


def images_per_second(net, images, classes, device, batch_flips: bool, method: str) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for image in images:
        infer_image(
            net, image, classes, method=method, scales=SCALES, flip=True, batch_flips=batch_flips, device=device
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--method", default="seam", choices=("seam", "eps"))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; the best of each way is kept")
    opts = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cam_params = {"method": opts.method, "backbone": opts.backbone, "ppc": True}
    net = build_cam_net(cam_params, None).to(device).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*opts.size, 3), dtype=np.uint8) for _ in range(opts.images)]
    classes = [3, 15]
    images_per_second(net, images[:1], classes, device, True, opts.method)  # warm-up
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(opts.repeats):  # alternate, so that load from other processes hits both ways alike
        for batch_flips in (False, True):
            rates[batch_flips].append(images_per_second(net, images, classes, device, batch_flips, opts.method))
    separate, batched = max(rates[False]), max(rates[True])
    print(f"hardware: {hardware(device)}")
    print(
        f"{opts.backbone} {opts.method}, best of {opts.repeats} rounds of {opts.images} images {opts.size[0]}x{opts.size[1]}, scales {SCALES} x flip"
    )
    print(f"one pass per scale and flip: {separate:.2f} images/s")
    print(f"flips batched per scale:     {batched:.2f} images/s  (x{batched / separate:.2f})")


if __name__ == "__main__":
    main()
