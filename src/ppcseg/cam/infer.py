"""infer-cam: multi-scale, flipped CAM inference of a trained CAM network (docs/faithfulness.md).

Writes <out>/<id>.npz CAM files in the format of `ppcseg.data.cams`, which every consumer reads them with.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ppcseg.data.cams import cam_path, save_cams, to_tensor
from ppcseg.data.voc import load_image, voc_dirs
from ppcseg.per_image import Context, PerImageStage, add_per_image_arguments, file_input, run_per_image
from ppcseg.utils.errors import InputError

PARAMS_KEYS: tuple[str, ...] = ("infer_cam", "cam.method")
log = logging.getLogger("ppcseg")

# The offset of the per-class normalisation (SEAM's min-max: values below min + offset become 0; EPS's max division).
NORM_OFFSET = 1e-5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_per_image_arguments(parser, "output folder of <id>.npz CAM files")
    parser.add_argument("--checkpoint", required=True, help="CAM network checkpoint written by train-cam")


def scaled_inputs(image: np.ndarray, scales: Sequence[float]) -> list[torch.Tensor]:
    """The image resized by each scale with PIL bicubic, normalised, (3, h, w) each."""
    height, width = image.shape[:2]
    pil = Image.fromarray(image)
    out = []
    for scale in scales:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = image if size == (width, height) else np.asarray(pil.resize(size, Image.Resampling.BICUBIC))
        out.append(to_tensor(resized))
    return out


def _fg_channels(classes: np.ndarray, background_channel: int) -> list[int]:
    """Network channels of VOC classes: SEAM keeps background at 0 (class k -> k), EPS at 20 (class k -> k-1)."""
    if background_channel == 0:
        return [int(c) for c in classes]
    if background_channel == 20:
        return [int(c) - 1 for c in classes]
    raise InputError(f"CAM network: background_channel must be 0 or 20, got {background_channel}")


EPS_MAPS: tuple[str, ...] = ("softmax", "refined")


def _pass_maps(
    out: dict[str, torch.Tensor],
    method: str,
    channels: list[int],
    input_size: tuple[int, int],
    size: tuple[int, int],
    eps_map: str = "softmax",
) -> torch.Tensor:
    """Per-pass maps of the present classes at the original size, (B, K, H, W)."""
    if method == "eps" and eps_map == "refined":
        # The PCM-refined map (EPS + PPC only) instead of the raw CAM's softmax; the official esp inference script
        # cannot run its own network as shipped, so which of the two gave the model zoo's seeds is not settled.
        if out.get("cam_rv") is None:
            raise InputError("infer_cam.eps_map: refined needs a CAM network with PCM (EPS + PPC, cam.ppc: true)")
        return F.interpolate(out["cam_rv"][:, channels], size=size, mode="bilinear", align_corners=False)
    if method == "seam":
        # The official net upsamples cam_rv to its input (align_corners=True); inference then resizes that to the
        # original image (align_corners=False). Both steps are kept; only the present channels are resized.
        cam = out["cam_rv"][:, channels]
        cam = F.interpolate(cam, size=input_size, mode="bilinear", align_corners=True)
        return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    prob = torch.softmax(out["cam"], dim=1)[:, channels]  # EPS: softmax over all 21 channels, per pass
    return F.interpolate(prob, size=size, mode="bilinear", align_corners=False)


@torch.inference_mode()
def infer_image(
    net: torch.nn.Module,
    image: np.ndarray,
    classes: Sequence[int],
    *,
    method: str,
    scales: Sequence[float],
    flip: bool,
    batch_flips: bool = True,
    device: torch.device | str = "cpu",
    eps_map: str = "softmax",
) -> np.ndarray:
    """Normalised CAMs (K, H, W) float32 of the present classes, in [0, 1].

    SEAM: sum of the PCM-refined CAM over scales x flips, negatives clipped, per-class min-max with the
    1e-5 offset. EPS: sum of softmaxed raw CAMs (`eps_map="refined"`: of the PCM-refined CAM), divided by the
    per-class max + 1e-5.
    `batch_flips` runs both flips of a scale as one batch of 2 (same result, fewer calls).
    """
    classes_arr = np.asarray(classes, dtype=np.int64)
    height, width = image.shape[:2]
    if classes_arr.size == 0:
        return np.zeros((0, height, width), dtype=np.float32)
    channels = _fg_channels(classes_arr, int(getattr(net, "background_channel", 0 if method == "seam" else 20)))
    total = torch.zeros((len(channels), height, width), dtype=torch.float32, device=device)
    for x in scaled_inputs(image, scales):
        views = [x, x.flip(-1)] if flip else [x]
        batches = [torch.stack(views)] if batch_flips else [v[None] for v in views]
        maps = torch.cat(
            [
                _pass_maps(net(b.to(device)), method, channels, tuple(x.shape[-2:]), (height, width), eps_map)
                for b in batches
            ]
        )
        total += maps[0]
        if flip:
            total += maps[1].flip(-1)
    if method == "seam":
        total.clamp_(min=0)
        low = total.amin(dim=(1, 2), keepdim=True)
        high = total.amax(dim=(1, 2), keepdim=True)
        total = torch.where(total < low + NORM_OFFSET, torch.zeros_like(total), total)
        norm = (total - low - NORM_OFFSET) / (high - low + NORM_OFFSET)
    else:
        norm = total / (total.amax(dim=(1, 2), keepdim=True) + NORM_OFFSET)
    # [quirk] SEAM's normalisation maps its minima slightly below 0; the CAM file contract is [0, 1].
    return norm.clamp_(0.0, 1.0).cpu().numpy()


def _load_net(path: str | Path) -> torch.nn.Module:
    from ppcseg.models.cam_net import load_cam_net

    return load_cam_net(path)


def _method_of(net: torch.nn.Module, params: dict[str, Any], checkpoint: str | Path) -> str:
    meta = getattr(net, "meta", None) or {}
    method = meta.get("method", params["cam"]["method"])
    if method not in ("seam", "eps"):
        raise InputError(f"{checkpoint}: unknown CAM method {method!r} in checkpoint meta (expected seam or eps)")
    if method != params["cam"]["method"]:
        log.warning(
            "checkpoint %s was trained with method %s, params say %s: using %s",
            checkpoint,
            method,
            params["cam"]["method"],
            method,
        )
    return method


def _init(ctx: Context) -> tuple[torch.nn.Module, str, torch.device]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = _load_net(ctx.args.checkpoint).to(device).eval()
    return net, _method_of(net, ctx.params, ctx.args.checkpoint), device


def _work(image_id: str, ctx: Context, state: tuple[torch.nn.Module, str, torch.device]) -> None:
    net, method, device = state
    cfg = ctx.params["infer_cam"]
    image = load_image(voc_dirs(ctx.root)["images"] / f"{image_id}.jpg")
    classes = ctx.labels[image_id]
    cams = infer_image(
        net,
        image,
        classes,
        method=method,
        scales=cfg["scales"],
        flip=cfg["flip"],
        device=device,
        eps_map=cfg.get("eps_map", "softmax"),
    )
    save_cams(cam_path(ctx.out, image_id), classes, cams)


STAGE = PerImageStage(
    name="infer_cam",
    params_keys=PARAMS_KEYS,
    outputs=("{}.npz",),
    splits=lambda args, params: params["infer_cam"]["splits"],
    inputs=lambda args, ids: {"checkpoint": file_input(args.checkpoint)},
    work=_work,
    pooled=False,
    init=_init,
    describe=lambda params: f"scales {params['infer_cam']['scales']}, flip {params['infer_cam']['flip']}",
)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_per_image(STAGE, args, params)
