"""The `make-synthetic-voc` stage: a generated dataset in the PASCAL VOC 2012 layout, for the demo and tests.

Each of the 20 VOC classes is drawn as its own shape (random scale, position, rotation), in its own saturated hue,
with its own texture (stripes, checker, dots, rings or waves, at a class-specific frequency and angle), so that
a CAM network can learn it from image-level labels alone. Backgrounds are smooth low-saturation gradients with noise,
never confusable with the saturated objects. One to three classes per image (data.synthetic.min/max_classes).

Like real VOC: SegmentationClass (train + val) has 255 borders around objects, SegmentationClassAug (train_aug + val)
has none, cls_labels.json is derived from the SegmentationClassAug masks, ids look like `2007_000032`, and
SaliencyMaps holds a plausible saliency map (blurred foreground, per-object confidence, noise, a faint false
positive now and then) for the EPS route. Same parameters, same bytes; the folder appears atomically.
"""

from __future__ import annotations

import argparse
import colorsys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ppcseg.data.manifest import write_manifest
from ppcseg.data.voc import save_mask, voc_dirs, write_class_labels
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_dir, write_text
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("data.root", "data.synthetic")
JPEG_QUALITY = 92
_TWO_PI = 2 * np.pi

Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _polygon(sides: int, radius: float) -> Shape:
    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        sector = _TWO_PI / sides
        angle = np.mod(np.arctan2(v, u), sector) - sector / 2
        return np.hypot(u, v) * np.cos(angle) < radius * np.cos(np.pi / sides)

    return inside


def _r(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v)


def _theta(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.arctan2(v, u)


# Shapes in the object frame (radius about 1), one per VOC class 1..20, pairwise distinct under rotation.
SHAPES: dict[int, Shape] = {
    1: lambda u, v: ((abs(u) < 0.3) & (abs(v) < 1)) | ((abs(v) < 0.3) & (abs(u) < 1)),  # plus
    2: lambda u, v: (_r(u, v) > 0.55) & (_r(u, v) < 1),  # ring
    3: _polygon(3, 1.0),  # triangle
    4: lambda u, v: (_r(u, v) < 1) & (v > 0),  # half disc
    5: lambda u, v: _r(np.clip(u, -0.6, 0.6) - u, v) < 0.4,  # capsule
    6: lambda u, v: np.maximum(abs(u), abs(v)) < 0.8,  # square
    7: lambda u, v: u**2 + (v / 0.55) ** 2 < 1,  # ellipse
    8: lambda u, v: _r(u, v) < 0.4 + 0.6 * ((np.cos(5 * _theta(u, v)) + 1) / 2) ** 2,  # star
    9: lambda u, v: ((u > -0.8) & (u < -0.2) & (abs(v) < 0.8)) | ((abs(u) < 0.8) & (v > 0.2) & (v < 0.8)),  # L
    10: _polygon(6, 0.95),  # hexagon
    11: lambda u, v: (np.maximum(abs(u), abs(v)) > 0.45) & (np.maximum(abs(u), abs(v)) < 0.85),  # square frame
    12: lambda u, v: (_r(u, v) < 1) & (_r(u - 0.5, v) > 0.75),  # crescent
    13: lambda u, v: abs(u) + abs(v) < 1,  # diamond
    14: lambda u, v: (_r(u - 0.5, v) < 0.5) | (_r(u + 0.5, v) < 0.5),  # dumbbell
    15: lambda u, v: _r(u, v) < 0.9,  # disc
    16: lambda u, v: _r(u, v) < 0.55 + 0.4 * np.cos(4 * _theta(u, v)),  # four petals
    17: lambda u, v: _r(u, v) < 0.75 + 0.2 * np.sign(np.sin(8 * _theta(u, v))),  # gear
    18: lambda u, v: ((abs(u) < 0.85) & (v > 0.3) & (v < 0.8)) | ((abs(u) < 0.25) & (abs(v) < 0.8)),  # T
    19: _polygon(5, 0.95),  # pentagon
    20: lambda u, v: ((u > 0.1) & (u < 0.95) & (abs(v) < 0.95 - u)) | ((u > -0.9) & (u <= 0.1) & (abs(v) < 0.3)),
}
TEXTURE_KINDS = ("stripes", "checker", "dots", "rings", "waves")


def _class_style(cls: int) -> tuple[str, float, float, float]:
    """(texture kind, cycles per object radius, texture angle, hue) of a class: fixed, so learnable."""
    kind = TEXTURE_KINDS[(cls - 1) % 5]
    freq = (1.5, 2.5, 3.5, 2.0)[(cls - 1) // 5]
    angle = (cls * 0.7) % np.pi
    hue = ((cls - 1) * 7 % 20) / 20  # neighbouring class ids get far-apart hues
    return kind, freq, angle, hue


def _texture(kind: str, freq: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if kind == "stripes":
        return np.sin(_TWO_PI * freq * u) > 0
    if kind == "checker":
        return np.sin(np.pi * freq * u) * np.sin(np.pi * freq * v) > 0
    if kind == "dots":
        return (np.mod(u * freq, 1) - 0.5) ** 2 + (np.mod(v * freq, 1) - 0.5) ** 2 < 0.09
    if kind == "rings":
        return np.sin(_TWO_PI * freq * _r(u, v)) > 0
    return np.sin(_TWO_PI * freq * (u + 0.15 * np.sin(_TWO_PI * v))) > 0  # waves


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))) * 255


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Smooth, low-saturation gradient plus blotches and noise: nothing an object's saturated hue resembles."""
    colours = [_hsv(rng.random(), rng.uniform(0, 0.15), rng.uniform(0.25, 0.85)) for _ in range(2)]
    angle = rng.uniform(0, _TWO_PI)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / size + 0.5
    ramp = np.clip(ramp, 0, 1)[..., None]
    image = colours[0] * (1 - ramp) + colours[1] * ramp
    blotches = ndimage.zoom(rng.normal(0, 12, (4, 4)), size / 4, order=1, mode="nearest")[:size, :size]
    return image + blotches[..., None] + rng.normal(0, 5, (size, size, 1))


def _draw_objects(
    rng: np.random.Generator, classes: list[int], size: int, yy: np.ndarray, xx: np.ndarray, image: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Paint the objects over `image` in place; returns the label map and each object's class and full mask."""
    label = np.zeros((size, size), dtype=np.uint8)
    instances = [c for c in classes for _ in range(1 + int(rng.random() < 0.15))]
    rng.shuffle(instances)
    placed: list[tuple[float, float, float]] = []
    masks = []
    for cls in instances:
        radius = rng.uniform(0.16, 0.3) * size
        for _ in range(20):  # prefer positions that leave every object mostly visible
            cy, cx = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
            if all(np.hypot(cy - py, cx - px) > 0.8 * (radius + pr) for py, px, pr in placed):
                break
        placed.append((cy, cx, radius))
        rot = rng.uniform(0, _TWO_PI)
        dy, dx = (yy - cy) / radius, (xx - cx) / radius
        u = np.cos(rot) * dx + np.sin(rot) * dy
        v = -np.sin(rot) * dx + np.cos(rot) * dy
        mask = SHAPES[cls](u, v)
        kind, freq, angle, hue = _class_style(cls)
        tu = np.cos(angle) * u + np.sin(angle) * v
        tv = -np.sin(angle) * u + np.cos(angle) * v
        pattern = _texture(kind, freq, tu, tv)[..., None]
        h = hue + rng.uniform(-0.012, 0.012)
        light = _hsv(h, rng.uniform(0.7, 0.95), rng.uniform(0.8, 1.0))
        dark = _hsv(h, rng.uniform(0.75, 1.0), rng.uniform(0.35, 0.5))
        shade = 1 + 0.12 * (np.cos(rot) * dx + np.sin(rot) * dy)[..., None]
        colour = np.where(pattern, light, dark) * shade + rng.normal(0, 6, (size, size, 1))
        image[mask] = colour[mask]
        label[mask] = cls
        masks.append((cls, mask))
    return label, masks


def render_image(
    index: int,
    *,
    seed: int,
    image_size: int,
    min_classes: int,
    max_classes: int,
    classes: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image `index` of the dataset: (RGB uint8 (H, W, 3), label uint8 (H, W) without borders, saliency uint8)."""
    rng = np.random.default_rng([seed, index])
    size = image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    pool = np.asarray(sorted(classes) if classes else range(1, 21))
    for _ in range(10):  # re-draw the rare layouts where an object is mostly hidden
        image = _background(rng, size, yy, xx)
        count = int(rng.integers(min_classes, max_classes + 1))
        drawn = sorted(rng.choice(pool, size=min(count, len(pool)), replace=False).tolist())
        label, masks = _draw_objects(rng, drawn, size, yy, xx, image)
        visible = [np.count_nonzero(label[m] == cls) / max(np.count_nonzero(m), 1) for cls, m in masks]
        if all(np.isin(drawn, label)) and min(visible) >= 0.3:
            break
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, label, _saliency(rng, label, size, yy, xx)


def _saliency(rng: np.random.Generator, label: np.ndarray, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    confidence = np.zeros(21)
    confidence[1:] = rng.uniform(0.7, 1.0, 20)
    sal = ndimage.gaussian_filter(confidence[label], sigma=max(size / 48, 0.5))
    if rng.random() < 0.3:  # a faint false positive, as real saliency detectors produce
        cy, cx = rng.uniform(0, size, 2)
        sal += 0.35 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.08 * size) ** 2))
    sal += rng.normal(0, 0.03, sal.shape)
    return (np.clip(sal, 0, 1) * 255).round().astype(np.uint8)


def add_borders(label: np.ndarray, width: int) -> np.ndarray:
    """VOC-style 255 band (about 2*width px) wherever the label changes, as in SegmentationClass."""
    footprint = np.ones((2 * width + 1, 2 * width + 1), dtype=bool)
    edge = ndimage.maximum_filter(label, footprint=footprint) != ndimage.minimum_filter(label, footprint=footprint)
    return np.where(edge, np.uint8(255), label)


def image_ids(count: int) -> list[str]:
    """VOC-like, sorted, unique ids: 2007_000032, 2007_000035, ... spread over the years 2007-2011."""
    return [f"{2007 + 5 * i // count}_{32 + 3 * i:06d}" for i in range(count)]


def _check(name: str, value: int, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"data.synthetic.{name}: {value!r} must be an integer {bound}")


def make_synthetic_voc(
    root: str | Path,
    *,
    seed: int,
    image_size: int,
    num_train: int,
    num_val: int,
    num_train_aug_extra: int,
    min_classes: int,
    max_classes: int,
    classes: list[int] | None = None,
) -> Path:
    """Write the dataset to `root` (a VOC2012-like folder), replacing it atomically; returns `root`.

    `classes` restricts the object classes drawn (VOC indices 1..20; None: all 20).
    """
    _check("image_size", image_size, 32)
    _check("num_train", num_train, 1)
    _check("num_val", num_val, 1)
    _check("num_train_aug_extra", num_train_aug_extra, 0)
    _check("min_classes", min_classes, 1, 20)
    _check("max_classes", max_classes, min_classes, 20)
    if classes is not None and (not classes or not all(isinstance(c, int) and 1 <= c <= 20 for c in classes)):
        raise InputError(f"data.synthetic.classes: {classes!r} must be a non-empty list of VOC class indices 1..20")
    total = num_train + num_val + num_train_aug_extra
    ids = image_ids(total)
    order = np.random.default_rng(seed).permutation(total)
    train = sorted(ids[i] for i in order[:num_train])
    val = sorted(ids[i] for i in order[num_train : num_train + num_val])
    val_set = set(val)
    train_aug = sorted(i for i in ids if i not in val_set)
    with_gt = set(train) | val_set
    border = max(1, image_size // 128)

    root = Path(root)
    with atomic_dir(root) as tmp:
        dirs = voc_dirs(tmp)
        for key in ("images", "masks", "masks_aug", "lists", "saliency"):
            dirs[key].mkdir(parents=True)
        labels: dict[str, list[int]] = {}
        for index, image_id in progress(list(enumerate(ids)), desc="synthetic VOC"):
            image, label, saliency = render_image(
                index,
                seed=seed,
                image_size=image_size,
                min_classes=min_classes,
                max_classes=max_classes,
                classes=classes,
            )
            # Fixed quality, no metadata: byte-identical output for the same parameters.
            Image.fromarray(image).save(dirs["images"] / f"{image_id}.jpg", format="JPEG", quality=JPEG_QUALITY)
            save_mask(dirs["masks_aug"] / f"{image_id}.png", label)
            if image_id in with_gt:
                save_mask(dirs["masks"] / f"{image_id}.png", add_borders(label, border))
            Image.fromarray(saliency).save(dirs["saliency"] / f"{image_id}.png", format="PNG")
            labels[image_id] = [int(c) for c in np.unique(label) if c != 0]
        for split, split_ids in (("train", train), ("val", val), ("train_aug", train_aug)):
            write_text(dirs["lists"] / f"{split}.txt", "".join(f"{i}\n" for i in split_ids))
        write_class_labels(tmp, labels)
    return root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="dataset root to create (the VOC2012 folder)")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    make_synthetic_voc(args.out, **params["data"]["synthetic"])
    write_manifest(args.out)  # what the workflow's rules take as the dataset's identity
