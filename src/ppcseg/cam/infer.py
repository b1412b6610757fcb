"""infer-cam: multi-scale, flipped CAM inference of a trained CAM network (spec 4.1 SEAM variant, 4.4 EPS variant).

Writes <out>/<id>.npz with `classes` (int64 VOC indices 1..20 present, ascending) and `cams` (float16 (K, H, W) at
the original image size, values in [0, 1]). `load_cams` reads and validates such a file for every consumer.
"""

from __future__ import annotations

import argparse
import logging
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ppcseg.cam.augment import IMAGENET_MEAN, IMAGENET_STD
from ppcseg.data.voc import load_image, read_class_labels, read_ids, voc_dirs
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_path, finish_resumable_dir, resumable_dir
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("infer_cam",)
log = logging.getLogger("ppcseg")

# SEAM's min-max normalisation offset (spec 4.1): values below min + EPS become 0 before scaling.
EPS = 1e-5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (JPEGImages, ImageSets, cls_labels.json)")
    parser.add_argument("--checkpoint", required=True, help="CAM network checkpoint written by train-cam")
    parser.add_argument("--out", required=True, help="output folder of <id>.npz CAM files")


def cam_path(cams_dir: str | Path, image_id: str) -> Path:
    return Path(cams_dir) / f"{image_id}.npz"


def save_cams(path: str | Path, classes: Sequence[int], cams: np.ndarray) -> None:
    """Atomically write one CAM file (classes int64, cams float16 clipped to [0, 1])."""
    classes_arr = np.asarray(classes, dtype=np.int64)
    cams16 = np.clip(cams, 0.0, 1.0).astype(np.float16)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, classes=classes_arr, cams=cams16)


def load_cams(
    path: str | Path,
    image_id: str,
    classes: Sequence[int] | None = None,
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read <path>/<image_id>.npz -> (classes int64 (K,), cams float32 (K, H, W)).

    `classes` (the image's labels) and `shape` ((H, W) of the image) are checked when given: a CAM for a class the
    image lacks, a missing class, a wrong size, a corrupt or non-finite file all raise InputError naming the file.
    """
    file = cam_path(path, image_id)
    if not file.is_file():
        raise InputError(f"{file}: CAM file not found (run infer-cam for this image)")
    try:
        with np.load(file, allow_pickle=False) as data:
            found = np.asarray(data["classes"])
            cams = np.asarray(data["cams"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{file}: cannot read CAM file ({type(err).__name__}: {err})") from err
    if found.ndim != 1 or not np.issubdtype(found.dtype, np.integer):
        raise InputError(f"{file}: 'classes' must be a 1-d integer array, got {found.dtype} {found.shape}")
    if found.size and (found.min() < 1 or found.max() > 20 or np.any(np.diff(found) <= 0)):
        raise InputError(f"{file}: 'classes' must be ascending VOC indices 1..20, got {found.tolist()}")
    if cams.ndim != 3 or cams.shape[0] != found.size:
        raise InputError(f"{file}: 'cams' must have shape (K={found.size}, H, W), got {cams.shape}")
    if classes is not None:
        expected = sorted(int(c) for c in classes)
        extra = sorted(set(found.tolist()) - set(expected))
        if extra:
            raise InputError(f"{file}: CAM for class(es) {extra} that image '{image_id}' does not have {expected}")
        if found.tolist() != expected:
            raise InputError(f"{file}: CAMs for classes {found.tolist()}, but image '{image_id}' has {expected}")
    if shape is not None and cams.shape[1:] != tuple(shape):
        raise InputError(f"{file}: CAM size {cams.shape[1:]} does not match image size {tuple(shape)}")
    cams = cams.astype(np.float32)
    if not np.isfinite(cams).all():
        raise InputError(f"{file}: CAMs hold NaN or infinite values")
    return found.astype(np.int64), cams


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> ImageNet-normalised float (3, H, W), the input the CAM network was trained on."""
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).div_(255.0)
    mean = torch.from_numpy(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.from_numpy(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def scaled_inputs(image: np.ndarray, scales: Sequence[float]) -> list[torch.Tensor]:
    """The image resized by each scale with PIL bicubic (spec 4.1), normalised, (3, h, w) each."""
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


def _pass_maps(
    out: dict[str, torch.Tensor], method: str, channels: list[int], input_size: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Per-pass maps of the present classes at the original size, (B, K, H, W)."""
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
) -> np.ndarray:
    """Normalised CAMs (K, H, W) float32 of the present classes, in [0, 1].

    SEAM (spec 4.1): sum of the PCM-refined CAM over scales x flips, negatives clipped, per-class min-max with the
    1e-5 offset. EPS (spec 4.4): sum of softmaxed raw CAMs, divided by the per-class max + 1e-5.
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
            [_pass_maps(net(b.to(device)), method, channels, tuple(x.shape[-2:]), (height, width)) for b in batches]
        )
        total += maps[0]
        if flip:
            total += maps[1].flip(-1)
    if method == "seam":
        total.clamp_(min=0)
        low = total.amin(dim=(1, 2), keepdim=True)
        high = total.amax(dim=(1, 2), keepdim=True)
        total = torch.where(total < low + EPS, torch.zeros_like(total), total)
        norm = (total - low - EPS) / (high - low + EPS)
    else:
        norm = total / (total.amax(dim=(1, 2), keepdim=True) + EPS)
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


def split_ids(root: str | Path, splits: Sequence[str]) -> list[str]:
    """Union of the splits' image ids, first occurrence order, without duplicates."""
    return list(dict.fromkeys(i for split in splits for i in read_ids(root, split)))


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    cfg = params["infer_cam"]
    root = Path(args.data)
    ids = split_ids(root, cfg["splits"])
    labels = read_class_labels(root)
    missing = [i for i in ids if i not in labels]
    if missing:
        raise InputError(
            f"{voc_dirs(root)['labels']}: no image-level labels for {len(missing)} image(s), e.g. {missing[:3]}"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = _load_net(args.checkpoint).to(device).eval()
    method = _method_of(net, params, args.checkpoint)
    work = resumable_dir(args.out)
    todo = [i for i in ids if not cam_path(work, i).is_file()]
    log.info(
        "infer-cam (%s): %d images, %d already done, scales %s, flip %s, device %s",
        method,
        len(ids),
        len(ids) - len(todo),
        cfg["scales"],
        cfg["flip"],
        device,
    )
    start = time.monotonic()
    for image_id in progress(todo, desc="infer-cam"):
        image = load_image(voc_dirs(root)["images"] / f"{image_id}.jpg")
        classes = labels[image_id]
        cams = infer_image(net, image, classes, method=method, scales=cfg["scales"], flip=cfg["flip"], device=device)
        save_cams(cam_path(work, image_id), classes, cams)
    elapsed = time.monotonic() - start
    if todo:
        log.info("infer-cam: %d images in %.1f s (%.2f images/s)", len(todo), elapsed, len(todo) / max(elapsed, 1e-9))
    finish_resumable_dir(args.out)
