"""A tiny generated VOC-layout folder for the segmentation tests: coloured rectangles on noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ppcseg.data.voc import save_mask

SIZES = [(64, 64), (48, 72), (72, 56), (64, 80)]


def make_voc(root: Path, n_images: int = 8, seed: int = 0) -> Path:
    """n_images with one or two coloured rectangles (classes 1..3); GT masks with a 255 border, pseudo-masks without."""
    rng = np.random.default_rng(seed)
    colours = {1: (220, 30, 30), 2: (30, 220, 30), 3: (30, 30, 220)}
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "pseudo"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{i:06d}" for i in range(n_images)]
    for i, image_id in enumerate(ids):
        height, width = SIZES[i % len(SIZES)]
        image = rng.integers(90, 140, size=(height, width, 3)).astype(np.uint8)
        mask = np.zeros((height, width), np.uint8)
        for cls in sorted({1 + i % 3, 1 + (i * 7) % 3})[: 1 + i % 2]:
            y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
            y1, x1 = y0 + rng.integers(12, height // 2), x0 + rng.integers(12, width // 2)
            image[y0:y1, x0:x1] = colours[cls]
            mask[y0:y1, x0:x1] = cls
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_mask(root / "pseudo" / f"{image_id}.png", mask)
        gt = mask.copy()
        edge = np.zeros_like(mask, bool)
        edge[1:] |= mask[1:] != mask[:-1]
        edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
        gt[edge] = 255
        save_mask(root / "SegmentationClass" / f"{image_id}.png", gt)
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text("\n".join(ids) + "\n")
    (lists / "train.txt").write_text("\n".join(ids[:6]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    return root


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc") / "VOC2012")


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
