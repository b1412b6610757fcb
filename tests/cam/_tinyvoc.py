"""A tiny VOC-layout folder for CAM training tests: coloured rectangles, one colour per class."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ppcseg.config import REPO_ROOT, load_params

COLOURS = {1: (220, 40, 40), 2: (40, 200, 60), 3: (40, 70, 220)}


def make_tiny_voc(root: Path, n: int = 16, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "ImageSets/Segmentation", "SaliencyMaps"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(n):
        image_id = f"img_{i:03d}"
        img = rng.integers(90, 140, size=(size, size + 8, 3)).astype(np.uint8)
        sal = np.zeros(img.shape[:2], dtype=np.uint8)
        classes = sorted(rng.choice([1, 2, 3], size=int(rng.integers(1, 3)), replace=False).tolist())
        for c in classes:
            h, w = rng.integers(size // 4, size // 2, size=2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            img[y : y + h, x : x + w] = COLOURS[c]
            sal[y : y + h, x : x + w] = 255
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        Image.fromarray(sal).save(root / "SaliencyMaps" / f"{image_id}.png")
        labels[image_id] = classes
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(sorted(labels)) + "\n")
    (root / "cls_labels.json").write_text(json.dumps(labels))
    return root


def tiny_cam_params(**overrides: Any) -> dict[str, Any]:
    """The `cam` section of params.yaml with tiny, fast settings."""
    cam = copy.deepcopy(load_params([REPO_ROOT / "params.yaml"])["cam"])
    cam.update(
        backbone="tiny",
        pretrained=False,
        crop_size=48,
        view2_size=32,
        resize_long=[48, 72],
        batch_size=4,
        max_steps=12,
        num_workers=0,
        checkpoint_every=4,
        lr=0.05,
    )
    cam.update(overrides)
    return cam
