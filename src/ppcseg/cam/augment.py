"""Training augmentation of the classification stage (docs/faithfulness.md), deterministic per sample.

Each sample draws its randomness from `numpy.random.default_rng((seed, epoch, index))`, so an augmented batch depends
only on the run's seed and the sample's position in the schedule: not on the number of DataLoader workers, the number
of processes, or where a resumed run restarted.

Order: random resize of the long side (bicubic) -> horizontal flip (p 0.5) -> ColorJitter(0.3, 0.3, 0.3, 0.1) ->
ImageNet normalisation -> random crop with zero padding (zero in normalised space) when the image is smaller.
A saliency map (EPS) follows the same resize, flip and crop; it is not colour-jittered.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image

from ppcseg.data.cams import IMAGENET_MEAN, IMAGENET_STD

JITTER = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng((seed, epoch, index))


def resize_long(img: Image.Image, long_side: int, resample: Image.Resampling) -> Image.Image:
    w, h = img.size
    scale = long_side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if size == (w, h) else img.resize(size, resample)


def color_jitter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """torchvision's ColorJitter (factors uniform in [1-a, 1+a], hue in [-0.1, 0.1], random order) from `rng`."""
    b, c, s = (rng.uniform(1 - JITTER[k], 1 + JITTER[k]) for k in ("brightness", "contrast", "saturation"))
    hue = rng.uniform(-JITTER["hue"], JITTER["hue"])
    ops = [
        lambda im: TF.adjust_brightness(im, b),
        lambda im: TF.adjust_contrast(im, c),
        lambda im: TF.adjust_saturation(im, s),
        lambda im: TF.adjust_hue(im, hue),
    ]
    for op_index in rng.permutation(4):
        img = ops[op_index](img)
    return img


def crop_box(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int, int, int, int, int]:
    """(src_top, src_left, dst_top, dst_left, crop_h, crop_w): a random window, or a random placement if smaller."""
    space_h, space_w = height - size, width - size
    src_top, dst_top = (int(rng.integers(space_h + 1)), 0) if space_h > 0 else (0, int(rng.integers(-space_h + 1)))
    src_left, dst_left = (int(rng.integers(space_w + 1)), 0) if space_w > 0 else (0, int(rng.integers(-space_w + 1)))
    return src_top, src_left, dst_top, dst_left, min(size, height), min(size, width)


def _crop(array: np.ndarray, box: tuple[int, int, int, int, int, int], size: int) -> np.ndarray:
    src_top, src_left, dst_top, dst_left, ch, cw = box
    out = np.zeros((size, size) + array.shape[2:], dtype=array.dtype)
    out[dst_top : dst_top + ch, dst_left : dst_left + cw] = array[src_top : src_top + ch, src_left : src_left + cw]
    return out


def augment(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    resize_range: Sequence[int],
    crop_size: int,
    saliency: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Image uint8 (H, W, 3) -> normalised float32 (3, S, S); saliency uint8 (H, W) -> float32 (1, S, S) in [0, 1]."""
    img = Image.fromarray(image)
    sal = Image.fromarray(saliency) if saliency is not None else None
    long_side = int(rng.integers(resize_range[0], resize_range[1] + 1))
    img = resize_long(img, long_side, Image.Resampling.BICUBIC)
    if sal is not None:
        sal = sal.resize(img.size, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        sal = sal.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if sal is not None else None
    img = color_jitter(img, rng)
    normed = (np.asarray(img, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    box = crop_box(normed.shape[0], normed.shape[1], crop_size, rng)
    out = np.ascontiguousarray(_crop(normed, box, crop_size).transpose(2, 0, 1))
    if sal is None:
        return out, None
    sal_arr = np.asarray(sal, dtype=np.float32) / 255.0
    return out, _crop(sal_arr, box, crop_size)[None]
