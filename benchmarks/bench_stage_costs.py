"""Cost per unit of work of every stage at real sizes (random weights, random VOC-sized images): time, peak RSS, disk.

    python benchmarks/bench_stage_costs.py [--repeats 2] [--batch 2] [--out benchmarks/stage_costs.csv]
    python benchmarks/bench_stage_costs.py --stage train_cam_seam      # one stage, in this process

Each stage runs in its own process (so that its peak RSS is its own) on one 375 x 500 image (VOC's usual size) or one
training batch: ResNet-38 CAM step at crop 448 (SEAM + PPC, EPS + PPC), infer_cam with the paper's 4 scales x flip,
the la/ha CRF of affinity_labels, an AffinityNet step at crop 448, the random walk, the EPS route's CRF masks, a
DeepLab step at crop 448 (v1 LargeFOV on ResNet-38, v2 on ResNet-101) and the MS (6 scales) + flip + CRF evaluation.
Training steps use --batch images (params.yaml's global batch is 8 for CAM and AffinityNet, 10 for DeepLab; a CPU
holds a reduced batch; the README scales the per-step time to the paper's batch linearly and says so). The
first unit is a warm-up; the median of --repeats timed units is reported with the hardware. Disk is the size of one
unit's output as the stage writes it (CAM .npz, mask .png).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hardware import hardware

from ppcseg.config import REPO_ROOT, load_params

SIZE = (375, 500)  # (H, W) of most VOC 2012 images
CLASSES = [3, 15]  # two present classes, as a typical VOC image
STAGES = (
    "train_cam_seam",
    "train_cam_eps",
    "infer_cam",
    "affinity_labels",
    "train_affinity",
    "random_walk",
    "crf_masks",
    "train_seg_v1",
    "train_seg_v2",
    "eval_seg_msf_crf",
)
SEG_CONFIGS = {
    "v1": "deeplabv1-largefov_resnet38_1xb10-20k_voc12pseudo-448x448.py",
    "v2": "deeplabv2_r101_1xb10-20k_voc12pseudo-448x448.py",
}


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def _cams(rng: np.random.Generator) -> np.ndarray:
    # Smooth like real CAMs (a coarse random field upsampled), so CRF work and mask sizes are realistic.
    coarse = torch.from_numpy(rng.random((1, len(CLASSES), SIZE[0] // 32, SIZE[1] // 32), dtype=np.float32))
    return torch.nn.functional.interpolate(coarse, SIZE, mode="bilinear", align_corners=False)[0].numpy()


def _timed(unit: Callable[[], object], repeats: int) -> float:
    unit()  # warm-up: allocations, lazy imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        unit()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _npz_bytes(cams: np.ndarray) -> int:
    from ppcseg.data.cams import save_cams

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cams.npz"
        save_cams(path, CLASSES, cams)
        return path.stat().st_size


def _png_bytes(mask: np.ndarray) -> int:
    from ppcseg.data.voc import save_mask

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mask.png"
        save_mask(path, mask)
        return path.stat().st_size


def cam_step(method: str, batch: int, repeats: int, params: dict) -> dict:
    from bench_train_step import make_batch, make_step

    cam = dict(params["cam"], method=method, ppc=True, pretrained=False, batch_size=batch, view2_scale=None)
    step = make_step(cam, make_batch(method, batch, cam["crop_size"], torch.device("cpu")), torch.device("cpu"), 100)
    counter = iter(range(1000))
    return {"seconds": _timed(lambda: step(next(counter)), repeats), "batch": batch}


def infer_cam(repeats: int, params: dict, rng: np.random.Generator) -> dict:
    from ppcseg.cam.infer import infer_image
    from ppcseg.models.cam_net import build_cam_net

    net = build_cam_net(dict(params["cam"], pretrained=False), None).eval()
    image, cfg = _image(rng), params["infer_cam"]
    cams: list[np.ndarray] = []

    def unit() -> None:
        cams[:] = [infer_image(net, image, CLASSES, method="seam", scales=cfg["scales"], flip=cfg["flip"])]

    seconds = _timed(unit, repeats)
    return {"seconds": seconds, "disk_bytes": _npz_bytes(cams[0])}


def affinity_labels(repeats: int, params: dict, rng: np.random.Generator) -> dict:
    from ppcseg.refine.affinity_labels import alpha_label_map

    cfg, image, cams = params["affinity"], _image(rng), _cams(rng)
    masks: list[np.ndarray] = []

    def unit() -> None:
        masks[:] = [
            alpha_label_map(image, np.array(CLASSES), cams, cfg[k], cfg["crf"]) for k in ("low_alpha", "high_alpha")
        ]

    seconds = _timed(unit, repeats)
    return {"seconds": seconds, "disk_bytes": sum(_png_bytes(m) for m in masks)}


def train_affinity(batch: int, repeats: int, params: dict) -> dict:
    from ppcseg.refine.affinity_net import build_affinity_net, pair_affinity, pair_indices
    from ppcseg.refine.train_affinity import affinity_loss, pair_labels, param_groups

    cfg = params["affinity"]
    net = build_affinity_net(params["cam"]["backbone"]).train()
    optimizer = torch.optim.SGD(param_groups(net, cfg["lr"], cfg["weight_decay"]), lr=cfg["lr"])
    crop, feat = cfg["crop_size"], cfg["crop_size"] // 8
    src, dst = pair_indices(cfg["radius"], feat, feat)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, crop, crop, generator=gen)
    targets = torch.randint(0, 3, (batch, feat, feat), generator=gen)  # bg / fg classes / ignore, as pooled labels

    def unit() -> None:
        losses = affinity_loss(pair_affinity(net(images), src, dst), *pair_labels(targets, src, dst))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()

    return {"seconds": _timed(unit, repeats), "batch": batch}


def random_walk(repeats: int, params: dict, rng: np.random.Generator) -> dict:
    from ppcseg.refine.affinity_net import build_affinity_net
    from ppcseg.refine.random_walk import random_walk_mask

    cfg = params["random_walk"]
    net = build_affinity_net(params["cam"]["backbone"]).eval()
    image, cams = _image(rng), _cams(rng)
    masks: list[np.ndarray] = []

    def unit() -> None:
        masks[:] = [
            random_walk_mask(
                net,
                image,
                np.array(CLASSES),
                cams,
                beta=cfg["beta"],
                logt=cfg["logt"],
                bg_score=cfg["bg_score"],
                radius=cfg["radius"],
            )
        ]

    seconds = _timed(unit, repeats)
    return {"seconds": seconds, "disk_bytes": _png_bytes(masks[0])}


def crf_masks(repeats: int, params: dict, rng: np.random.Generator) -> dict:
    from ppcseg.refine.crf_masks import crf_mask

    image, cams = _image(rng), _cams(rng)
    masks: list[np.ndarray] = []

    def unit() -> None:
        masks[:] = [crf_mask(image, np.array(CLASSES), cams, params["crf_masks"])]

    seconds = _timed(unit, repeats)
    return {"seconds": seconds, "disk_bytes": _png_bytes(masks[0])}


def _segmentor(config: str) -> torch.nn.Module:
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import ppcseg.segment.dataset  # noqa: F401  (registers the dataset and transforms)
    import ppcseg.segment.models  # noqa: F401
    from ppcseg.segment.checkpoint import _drop_pretrained, load_config

    model_cfg = load_config(config).model
    _drop_pretrained(model_cfg)  # random weights: nothing is read or downloaded
    init_default_scope("mmseg")
    return MODELS.build(model_cfg)


def train_seg(version: str, batch: int, repeats: int, params: dict) -> dict:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    crop = params["segmentation"]["crop_size"]
    model = _segmentor(SEG_CONFIGS[version]).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=params["segmentation"]["lr"], momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 3, crop, crop, generator=gen)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(
            metainfo={"img_shape": (crop, crop), "ori_shape": (crop, crop), "pad_shape": (crop, crop)}
        )
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 21, (1, crop, crop), generator=gen))
        samples.append(sample)

    def unit() -> None:
        loss, _ = model.parse_losses(model.loss(inputs, samples))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return {"seconds": _timed(unit, repeats), "batch": batch}


def eval_seg(repeats: int, params: dict, rng: np.random.Generator) -> dict:
    from ppcseg.segment.inference import InferenceProtocol, predict_labels

    model = _segmentor(SEG_CONFIGS["v1"]).eval()
    protocol = InferenceProtocol.from_params("msf-crf", params["segmentation"]["test"])
    image = _image(rng)
    return {"seconds": _timed(lambda: predict_labels(model, image, protocol), repeats)}


def run_stage(stage: str, batch: int, repeats: int) -> dict:
    params = load_params([REPO_ROOT / "params.yaml"])
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    if stage.startswith("train_cam_"):
        result = cam_step(stage.removeprefix("train_cam_"), batch, repeats, params)
    elif stage == "infer_cam":
        result = infer_cam(repeats, params, rng)
    elif stage == "affinity_labels":
        result = affinity_labels(repeats, params, rng)
    elif stage == "train_affinity":
        result = train_affinity(batch, repeats, params)
    elif stage == "random_walk":
        result = random_walk(repeats, params, rng)
    elif stage == "crf_masks":
        result = crf_masks(repeats, params, rng)
    elif stage.startswith("train_seg_"):
        result = train_seg(stage.removeprefix("train_seg_"), batch, repeats, params)
    else:
        result = eval_seg(repeats, params, rng)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=STAGES, help="run one stage here and print its JSON result")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--repeats", type=int, default=2, help="timed units after one warm-up (median reported)")
    parser.add_argument("--batch", type=int, default=2, help="images per training step (reduced on a CPU)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as CSV")
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.batch, args.repeats)))
        return
    print(f"hardware: {hardware(torch.device('cpu'))}")
    print(f"images {SIZE[0]}x{SIZE[1]}, training batch {args.batch}, median of {args.repeats} after 1 warm-up")
    rows = []
    for stage in args.stages:
        command = [
            sys.executable,
            __file__,
            "--stage",
            stage,
            "--batch",
            str(args.batch),
            "--repeats",
            str(args.repeats),
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{stage} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        row = {"stage": stage, **result, "process_s": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        buffer = io.StringIO()
        fields = ["stage", "seconds", "batch", "disk_bytes", "peak_rss_gib", "process_s"]
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
        args.out.write_text(buffer.getvalue())


if __name__ == "__main__":
    main()
