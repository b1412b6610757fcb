"""Time one CAM training step: baseline vs baseline + PPC, same backbone, batch and inputs (target ratio <= 1.10).

    python benchmarks/bench_train_step.py                       # ResNet-38, crop 192, batch 2, CPU (no GPU here)
    python benchmarks/bench_train_step.py --device cuda         # GPU present: the paper settings of params.yaml
    python benchmarks/bench_train_step.py --device cuda --method eps   # EPS route (official log: about 0.66 s/it)

A step is forward of both views, all loss terms, backward and the SGD update. Both variants are built up front and
their steps interleaved (same warm-up); the median of --steps timed steps is reported with the hardware it ran on.
On CUDA the defaults are the paper's (params.yaml `cam`: ResNet-38, crop 448, view 2 128, global batch 8 on one GPU),
the steps are synchronised before and after, and seconds per iteration and peak CUDA memory are printed.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from hardware import hardware

from ppcseg.cam.dataset import layout_labels
from ppcseg.cam.train import compute_losses, make_optimizer, set_poly_lr
from ppcseg.config import REPO_ROOT, load_params
from ppcseg.models.cam_net import build_cam_net

CPU_DEFAULTS = {"backbone": "resnet38", "crop": 192, "view2": 64, "batch": 2}


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
            net,
            batch["image"],
            batch["labels"],
            cam,
            saliency=batch.get("saliency"),
            generator=torch.Generator().manual_seed(index),
        )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return step


def make_batch(method: str, batch_size: int, crop: int, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    classes = torch.randint(1, 21, (batch_size,), generator=gen).tolist()
    labels = torch.stack([torch.from_numpy(layout_labels([c], method)) for c in classes]).float()
    batch = {"image": torch.randn(batch_size, 3, crop, crop, generator=gen), "labels": labels}
    if method == "eps":
        batch["saliency"] = (torch.rand(batch_size, 1, crop, crop, generator=gen) > 0.5).float()
    return {k: v.to(device) for k, v in batch.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=["resnet38", "resnet50", "resnet101", "tiny"])
    parser.add_argument("--method", default="seam", choices=["seam", "eps"])
    parser.add_argument("--crop", type=int)
    parser.add_argument("--view2", type=int, help="side of view 2 (contrast grid = view2 / 8)")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--paper", action="store_true", help="paper settings from params.yaml (default on CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default: 1 on CPU, 5 on CUDA)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")

    base = load_params([REPO_ROOT / "params.yaml"])["cam"]
    paper = {"backbone": base["backbone"], "crop": base["crop_size"], "view2": base["view2_size"]}
    paper["batch"] = base["batch_size"]
    defaults = paper if (args.paper or cuda) else CPU_DEFAULTS
    setting = {key: getattr(args, key) or value for key, value in defaults.items()}
    steps = args.steps or (20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    base.update(
        method=args.method,
        backbone=setting["backbone"],
        pretrained=False,
        crop_size=setting["crop"],
        view2_size=setting["view2"],
        view2_scale=None,
        batch_size=setting["batch"],
    )
    batch = make_batch(args.method, setting["batch"], setting["crop"], device)

    total = warmup + steps
    variants = {
        name: make_step(copy.deepcopy(base) | {"ppc": ppc}, batch, device, total)
        for name, ppc in (("baseline", False), ("ppc", True))
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(total):  # interleaved, so that load changes on a shared machine hit both variants alike
        for name, step in variants.items():
            elapsed = step(index)
            if index >= warmup:
                times[name].append(elapsed)
    baseline, ppc = (statistics.median(times[name]) for name in ("baseline", "ppc"))
    label = args.method.upper()
    print(f"hardware: {hardware(device)}")
    print(
        f"setting: {label}, backbone {setting['backbone']}, crop {setting['crop']}, view2 {setting['view2']}, "
        f"batch {setting['batch']}{' (paper)' if setting == paper else ''}, median of {steps} steps after {warmup} "
        "warm-up"
    )
    print(f"{label} step:       {baseline:9.3f} s/it")
    print(f"{label} + PPC step: {ppc:9.3f} s/it")
    print(f"ratio:           {ppc / baseline:9.3f}  (target <= 1.10)")
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"peak CUDA memory (both variants' models and optimisers resident): {peak:.1f} GiB")
        if label == "EPS":
            print("official EPS + PPC training log: about 0.66 s/it (their GPU)")


if __name__ == "__main__":
    main()
