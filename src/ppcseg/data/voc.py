"""PASCAL VOC 2012 constants and readers shared by every stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_path

CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
NUM_CLASSES = 21
IGNORE_INDEX = 255


def _make_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved), 256 entries."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.extend((r, g, b))
    return palette


PALETTE: list[int] = _make_palette()


def voc_dirs(root: str | Path) -> dict[str, Path]:
    """Standard sub-folders of a VOC2012 root (the folder holding JPEGImages)."""
    root = Path(root)
    return {
        "images": root / "JPEGImages",
        "masks": root / "SegmentationClass",
        "masks_aug": root / "SegmentationClassAug",
        "lists": root / "ImageSets" / "Segmentation",
        "labels": root / "cls_labels.json",
        "saliency": root / "SaliencyMaps",
    }


def read_ids(root: str | Path, split: str) -> list[str]:
    """Image ids of a split (train, val, train_aug, test) from ImageSets/Segmentation/<split>.txt."""
    path = voc_dirs(root)["lists"] / f"{split}.txt"
    if not path.is_file():
        raise InputError(f"{path}: image list for split '{split}' not found")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise InputError(f"{path}: image list is empty")
    return ids


def read_class_labels(root: str | Path) -> dict[str, list[int]]:
    """Image-level labels: id -> sorted VOC class indices (1..20) present in the image."""
    path = voc_dirs(root)["labels"]
    if not path.is_file():
        raise InputError(f"{path}: image-level class label file not found")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from err
    labels = {}
    for image_id, classes in raw.items():
        if not isinstance(classes, list) or not all(isinstance(c, int) and 1 <= c <= 20 for c in classes):
            raise InputError(f"{path}: labels of '{image_id}' must be a list of class indices 1..20, got {classes!r}")
        labels[image_id] = sorted(set(classes))
    return labels


def write_class_labels(root: str | Path, labels: dict[str, list[int]]) -> None:
    path = voc_dirs(root)["labels"]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({k: sorted(v) for k, v in sorted(labels.items())}, indent=0))


def label_vector(classes: list[int]) -> np.ndarray:
    """Multi-hot (21,) float32 vector in VOC layout, background (index 0) set."""
    vec = np.zeros(NUM_CLASSES, dtype=np.float32)
    vec[0] = 1.0
    vec[list(classes)] = 1.0
    return vec


def load_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); a clear InputError if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot read image ({err})") from err


def load_mask(path: str | Path, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Label mask uint8 (H, W) with values in 0..20 or 255; a clear InputError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mask not found")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("P", "L"):
                raise InputError(f"{path}: mask must be a palette or greyscale PNG, got mode {img.mode}")
            mask = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot read mask ({err})") from err
    if expected_shape is not None and mask.shape != tuple(expected_shape):
        raise InputError(f"{path}: mask size {mask.shape} does not match image size {tuple(expected_shape)}")
    bad = np.setdiff1d(np.unique(mask), np.r_[np.arange(NUM_CLASSES), IGNORE_INDEX])
    if bad.size:
        raise InputError(f"{path}: mask has labels outside 0-20 and 255: {bad.tolist()}")
    return mask


def save_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a label mask as a VOC palette PNG, atomically."""
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(PALETTE)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
