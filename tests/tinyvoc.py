"""The one tiny VOC-layout dataset of the tests: the product's generator at test sizes, optionally not square.

`make_voc` writes what every stage reads (JPEGImages, SegmentationClass with 255 borders, SegmentationClassAug without,
SaliencyMaps, the train / val / train_aug lists, cls_labels.json); `oracle_cams` writes CAMs made from its masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ppcseg.data.cams import save_cams
from ppcseg.data.synthetic import make_synthetic_voc
from ppcseg.data.voc import load_mask, read_class_labels, read_ids, save_mask, voc_dirs, write_class_labels


def make_voc(
    root: Path,
    *,
    size: int = 48,
    train: int = 4,
    val: int = 2,
    extra: int = 2,
    seed: int = 0,
    classes: list[int] | None = None,
    shapes: list[tuple[int, int]] | None = None,
) -> Path:
    """`make_synthetic_voc` with 1-2 objects per image (of `classes`, default all 20); returns `root`.

    `shapes`, (height, width) pairs cycled over the sorted ids, resizes each image and its masks after generation, so
    that tests see images that are not square (the generator draws squares); cls_labels.json follows the resized masks.
    """
    make_synthetic_voc(
        root,
        seed=seed,
        image_size=size,
        num_train=train,
        num_val=val,
        num_train_aug_extra=extra,
        min_classes=1,
        max_classes=2,
        classes=classes,
    )
    if shapes:
        _reshape(root, shapes)
    return root


def _reshape(root: Path, shapes: list[tuple[int, int]]) -> None:
    dirs = voc_dirs(root)
    ids = sorted(p.stem for p in dirs["images"].glob("*.jpg"))
    labels = {}
    for i, image_id in enumerate(ids):
        height, width = shapes[i % len(shapes)]
        image = dirs["images"] / f"{image_id}.jpg"
        Image.open(image).resize((width, height), Image.BILINEAR).save(image, quality=95)
        saliency = dirs["saliency"] / f"{image_id}.png"
        Image.open(saliency).resize((width, height), Image.BILINEAR).save(saliency)
        for key in ("masks", "masks_aug"):
            path = dirs[key] / f"{image_id}.png"
            if path.is_file():  # SegmentationClass exists for train and val only
                mask = Image.fromarray(load_mask(path)).resize((width, height), Image.NEAREST)
                save_mask(path, np.asarray(mask))
        aug = load_mask(dirs["masks_aug"] / f"{image_id}.png")
        labels[image_id] = [int(c) for c in np.unique(aug) if c != 0]
    write_class_labels(root, labels)


def oracle_cams(root: Path, out: Path, split: str = "train_aug", noise: float = 0.0, seed: int = 0) -> None:
    """CAMs from the SegmentationClassAug masks: 0.9 inside the class, 0.05 outside, plus uniform noise, clipped."""
    rng = np.random.default_rng(seed)
    labels = read_class_labels(root)
    for image_id in read_ids(root, split):
        gt = load_mask(voc_dirs(root)["masks_aug"] / f"{image_id}.png")
        classes = labels[image_id]
        cams = np.stack([np.where(gt == c, 0.9, 0.05) for c in classes]).astype(np.float32)
        cams += noise * rng.uniform(-1, 1, cams.shape)
        save_cams(out / f"{image_id}.npz", classes, np.clip(cams, 0, 1))
