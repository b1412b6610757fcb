"""Time one CAM training step: SEAM vs SEAM + PPC, same backbone, batch and inputs (target ratio <= 1.10).

    python benchmarks/bench_train_step.py                       # ResNet-38, crop 192, batch 2, on CPU
    python benchmarks/bench_train_step.py --crop 448 --view2 128 --batch 8 --device cuda   # paper size

A step is forward of both views, all loss terms, backward and the SGD update. Both variants are built up front and their
steps interleaved (same warm-up); the median of --steps timed steps is reported with the hardware it ran on.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import torch

from ppcseg.cam.train import compute_losses, make_optimizer, set_poly_lr
from ppcseg.config import REPO_ROOT, load_params
from ppcseg.models.cam_net import build_cam_net


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def make_step(cam: dict, batch: dict, device: torch.device, total_steps: int) -> Callable[[int], float]:
    """A closure that runs training step `step` of one variant and returns its wall time in seconds."""
    torch.manual_seed(0)
    net = build_cam_net(cam, None).to(device).train()
    optimizer = make_optimizer(net, cam)

    def step(index: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        set_poly_lr(optimizer, cam, index, total_steps)
        losses = compute_losses(
            net, batch["image"], batch["labels"], cam, generator=torch.Generator().manual_seed(index)
        )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet38", choices=["resnet38", "resnet50", "resnet101", "tiny"])
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--view2", type=int, default=64, help="side of view 2 (contrast grid = view2 / 8)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    base = load_params([REPO_ROOT / "params.yaml"])["cam"]
    base.update(
        backbone=args.backbone, pretrained=False, crop_size=args.crop, view2_size=args.view2, batch_size=args.batch
    )
    gen = torch.Generator().manual_seed(0)
    labels = torch.zeros(args.batch, 21)
    labels[:, 0] = 1
    labels[torch.arange(args.batch), torch.randint(1, 21, (args.batch,), generator=gen)] = 1
    batch = {
        "image": torch.randn(args.batch, 3, args.crop, args.crop, generator=gen).to(device),
        "labels": labels.to(device),
    }

    total = args.warmup + args.steps
    variants = {
        name: make_step(copy.deepcopy(base) | {"method": "seam", "ppc": ppc}, batch, device, total)
        for name, ppc in (("seam", False), ("ppc", True))
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(total):  # interleaved, so that load changes on a shared machine hit both variants alike
        for name, step in variants.items():
            elapsed = step(index)
            if index >= args.warmup:
                times[name].append(elapsed)
    seam, ppc = (statistics.median(times[name]) for name in ("seam", "ppc"))
    print(f"hardware: {hardware(device)}")
    print(
        f"setting: backbone {args.backbone}, crop {args.crop}, view2 {args.view2}, batch {args.batch}, "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    print(f"SEAM step:       {seam * 1000:9.1f} ms")
    print(f"SEAM + PPC step: {ppc * 1000:9.1f} ms")
    print(f"ratio:           {ppc / seam:9.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
