"""The CAM training images: augmented views with their image-level labels (and saliency maps on the EPS route).

A neutral module, used by train-cam and by pretrain-backbone (the demo's ImageNet stand-in), so that no stage module
imports another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ppcseg.cam.augment import augment, sample_rng
from ppcseg.data.voc import check_labels, label_vector, load_image, voc_dirs
from ppcseg.utils.errors import InputError


def load_saliency(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Greyscale uint8 (H, W); an RGB map is averaged over its channels (as EPS reads them)."""
    if not path.is_file():
        raise InputError(f"{path}: saliency map not found")
    arr = load_image(path).astype(np.float32).mean(axis=2)  # the one image reader (links, modes, EXIF policy)
    if arr.shape != size:
        raise InputError(f"{path}: saliency size {arr.shape} does not match its image {size}")
    return np.round(arr).astype(np.uint8)


def layout_labels(classes: list[int], method: str) -> np.ndarray:
    """21-vector with background set: SEAM layout (background 0) or EPS layout (class k -> k-1, background 20)."""
    vec = label_vector(classes)
    return vec if method == "seam" else np.roll(vec, -1)


class CamTrainSet(Dataset):
    """Items are keyed by (epoch, index): the key fixes the sample and its augmentation."""

    def __init__(
        self, root: str | Path, ids: list[str], cam: dict[str, Any], seed: int, saliency_dir: str | Path | None
    ) -> None:
        self.dirs = voc_dirs(root)
        self.ids = ids
        self.cam = cam
        self.seed = seed
        self.saliency_dir = Path(saliency_dir) if saliency_dir else None
        labels = check_labels(Path(root), ids)
        self.labels = {i: layout_labels(labels[i], cam["method"]) for i in ids}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        image_id = self.ids[index]
        image = load_image(self.dirs["images"] / f"{image_id}.jpg")
        saliency = None
        if self.saliency_dir is not None:
            saliency = load_saliency(self.saliency_dir / f"{image_id}.png", image.shape[:2])
        x, sal = augment(
            image,
            sample_rng(self.seed, epoch, index),
            resize_range=self.cam["resize_long"],
            crop_size=self.cam["crop_size"],
            saliency=saliency,
        )
        item = {"image": torch.from_numpy(x), "labels": torch.from_numpy(self.labels[image_id])}
        if sal is not None:
            item["saliency"] = torch.from_numpy(sal)
        return item
