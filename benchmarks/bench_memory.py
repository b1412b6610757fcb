"""Peak memory of train_cam per image at crop 448 and of infer_cam, each measured in a fresh process.

    python benchmarks/bench_memory.py                      # ResNet-38, SEAM + PPC, CPU
    python benchmarks/bench_memory.py --device cuda        # peak CUDA memory instead of peak RSS

train_cam: one full training step (both views, all losses, backward, SGD) at batch 1 and batch 2; the per-image figure
is the difference, the baseline the batch-1 figure minus it (model, optimiser, framework). infer_cam: one image of
500x375 through all 8 passes (4 scales x flip). On CPU the figure is the process's peak resident set (ru_maxrss),
which includes the framework itself; the 'idle' row (imports and model only) is printed as that baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from hardware import hardware

CHILD = r"""
import json, resource, sys, numpy as np, torch
from ppcseg.config import REPO_ROOT, load_params
from ppcseg.models.cam_net import build_cam_net
mode, batch, crop, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), torch.device(sys.argv[4])
torch.set_num_threads(2)
cam = load_params([REPO_ROOT / "params.yaml"])["cam"] | {"crop_size": crop}
net = build_cam_net(cam, None).to(device)
if mode == "train":
    from ppcseg.cam.train import compute_losses, make_optimizer
    net.train(); opt = make_optimizer(net, cam)
    x = torch.randn(batch, 3, crop, crop, device=device)
    y = torch.zeros(batch, 21, device=device); y[:, 0] = 1; y[:, 15] = 1
    losses = compute_losses(net, x, y, cam, generator=torch.Generator().manual_seed(0))
    opt.zero_grad(); losses["total"].backward(); opt.step()
elif mode == "infer":
    from ppcseg.cam.infer import infer_image
    net.eval()
    image = np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)
    with torch.no_grad():
        infer_image(net, image, [15], method="seam", scales=[0.5, 1.0, 1.5, 2.0], flip=True, device=device)
peak_cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cuda_mb": peak_cuda / 2**20}))
"""


def measure(mode: str, batch: int, crop: int, device: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(batch), str(crop), device], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def gpu_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=448)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    key = "cuda_mb" if args.device.startswith("cuda") else "rss_mb"
    idle = measure("idle", 1, args.crop, args.device)[key]
    one = measure("train", 1, args.crop, args.device)[key]
    two = measure("train", 2, args.crop, args.device)[key]
    infer = measure("infer", 1, args.crop, args.device)[key]
    print(f"hardware: {hardware()}; device {args.device}{f' ({gpu_name(args.device)})' if key == 'cuda_mb' else ''}")
    print(f"metric: {'peak CUDA memory' if key == 'cuda_mb' else 'peak RSS of the process'} (MiB)")
    print(f"idle (imports + ResNet-38 CAM net):      {idle:8.0f}")
    print(f"train_cam step, batch 1, crop {args.crop}:    {one:8.0f}")
    print(f"train_cam step, batch 2, crop {args.crop}:    {two:8.0f}")
    print(f"train_cam per image (batch 2 - batch 1): {two - one:8.0f}")
    print(f"  -> batch 8 estimate: {one + 7 * (two - one):.0f} MiB")
    print(f"infer_cam, one 500x375 image, 8 passes:  {infer:8.0f}  (over idle: {infer - idle:.0f})")
    print(f"ratios to idle: train batch 1 {one / idle:.2f}x, batch 2 {two / idle:.2f}x, infer {infer / idle:.2f}x")


if __name__ == "__main__":
    main()
