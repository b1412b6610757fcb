"""The CAM file format shared by infer-cam (writer) and every consumer (seeds, affinity labels, random walk, CRF masks,
report): one `<id>.npz` per image with `classes` (int64 VOC indices 1..20 present, ascending) and `cams` (float16
(K, H, W) at the original image size, values in [0, 1]). Also the network input normalisation the CAM and affinity
stages share (`to_tensor`). A neutral module, so that no stage module imports another.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ppcseg.data.voc import refuse_outside_link
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_path, read_npz

# The ImageNet statistics every network input is normalised with (the CAM training augmentation uses them too).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


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
    image lacks, a missing class, a wrong size, a corrupt file, values that are not finite or outside [0, 1] all raise InputError naming the file.
    """
    file = cam_path(path, image_id)
    if not file.is_file():
        raise InputError(f"{file}: CAM file not found (run infer-cam for this image)")
    refuse_outside_link(file, "CAM file")
    found, cams = read_npz(file, ("classes", "cams"), "CAM file")
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
    if cams.size and (cams.min() < 0.0 or cams.max() > 1.0):
        # thresholds and CRF unaries assume [0, 1]; a rescaled file would silently move every seed
        raise InputError(f"{file}: CAM values must lie in [0, 1], found {cams.min():.4g} .. {cams.max():.4g}")
    return found.astype(np.int64), cams


def channel_labels(classes: Sequence[int] | np.ndarray) -> np.ndarray:
    """VOC label (int64) of each channel of [background, CAMs of `classes`]; index an argmax over them with it."""
    return np.concatenate([[0], np.asarray(classes, dtype=np.int64)])


def seed_prediction(classes: np.ndarray, cams: np.ndarray, threshold: float) -> np.ndarray:
    """Seed of one image: argmax over [threshold, CAMs] (K+1, H, W) in float32, mapped to VOC indices (ties go to the
    background, then to the lower class)."""
    scores = np.concatenate([np.full((1, *cams.shape[1:]), threshold, dtype=np.float32), cams.astype(np.float32)])
    return channel_labels(classes)[np.argmax(scores, axis=0)]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> ImageNet-normalised float (3, H, W), the input the CAM network was trained on."""
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).div_(255.0)
    mean = torch.from_numpy(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.from_numpy(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std
