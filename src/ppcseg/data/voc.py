"""PASCAL VOC 2012 constants and readers shared by every stage."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
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


# Image ids become file names (<id>.jpg, <id>.png, <id>.npz) in every stage, so they must be plain names: VOC ids
# are YYYY_NNNNNN; VOC-layout datasets also use ASCII letters, digits, '_', '-' and '.' ('.' never first, so never
# '..'; '-' never first, so never read as an option by a tool). Non-ASCII letters stay out: an accented name has two
# Unicode forms (NFC, NFD), which file systems and archives may store apart, so a list could name a file not found.
_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_ID_ALLOWED = "allowed: ASCII letters A-Z a-z, digits 0-9, '_', '-', '.'; not first: '-', '.'"


def id_problem(image_id: object) -> str | None:
    """Why `image_id` is not a plain image name (None if it is one). Shared by the image lists and the labels."""
    if not isinstance(image_id, str):
        return f"image id {image_id!r} is not a string"
    if not image_id:
        return "empty image id"
    if any(ord(c) < 32 or ord(c) == 127 for c in image_id):
        return f"image id {image_id!r} contains a control character"
    if any(c.isspace() for c in image_id):
        return f"image id {image_id!r} contains whitespace"
    if "/" in image_id or "\\" in image_id:
        return f"image id {image_id!r} contains a path separator (ids are file names, not paths)"
    if image_id in (".", "..") or image_id.startswith("."):
        return f"image id {image_id!r} starts with '.' (ids are plain file names)"
    if not _ID_PATTERN.fullmatch(image_id):
        bad = sorted({c for c in image_id if not (c.isascii() and (c.isalnum() or c in "_.-"))})
        if bad:
            return f"image id {image_id!r} contains {''.join(bad)!r} ({_ID_ALLOWED})"
        return f"image id {image_id!r} starts with {image_id[0]!r} ({_ID_ALLOWED})"
    return None


def read_ids(root: str | Path, split: str) -> list[str]:
    """Image ids of a split (train, val, train_aug, test) from ImageSets/Segmentation/<split>.txt.

    One id per line; each must be a plain name (`id_problem`) and appear once. The error names the file and line.
    """
    path = voc_dirs(root)["lists"] / f"{split}.txt"
    if not path.is_file():
        raise InputError(f"{path}: image list for split '{split}' not found")
    refuse_outside_link(path, "image list")
    text = read_text_file(path, "image list")
    ids: list[str] = []
    first_line: dict[str, int] = {}
    # Lines end at \n, \r\n or \r only, as editors count them: str.splitlines() would also split at \f, \x1c or
    # \u2028, reading ids the user never wrote and naming the wrong line.
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        image_id = line.strip(" \t\r")
        if not image_id:
            continue
        problem = id_problem(image_id)
        if problem:
            raise InputError(f"{path}:{number}: {problem}")
        if image_id in first_line:
            raise InputError(
                f"{path}:{number}: image id {image_id!r} is listed twice (first on line {first_line[image_id]})"
            )
        first_line[image_id] = number
        ids.append(image_id)
    if not ids:
        raise InputError(f"{path}: image list is empty")
    return ids


def read_class_labels(root: str | Path) -> dict[str, list[int]]:
    """Image-level labels: id -> sorted VOC class indices (1..20) present in the image."""
    path = voc_dirs(root)["labels"]
    if not path.is_file():
        raise InputError(f"{path}: image-level class label file not found")
    refuse_outside_link(path, "class label file")
    try:
        raw = json.loads(read_text_file(path, "class label file"), object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from err
    except ValueError as err:  # a duplicate id, from _no_duplicate_keys
        raise InputError(f"{path}: {err}") from err
    if not isinstance(raw, dict):
        raise InputError(f"{path}: must hold an object mapping image ids to class lists, got a {type(raw).__name__}")
    labels = {}
    for image_id, classes in raw.items():
        problem = id_problem(image_id)
        if problem:
            raise InputError(f"{path}: {problem}")
        # bool is an int in Python: `true` would silently read as class 1 (aeroplane).
        if not isinstance(classes, list) or not all(type(c) is int and 1 <= c <= 20 for c in classes):
            raise InputError(
                f"{path}: labels of '{image_id}' must be a list of class indices 1..20, got {json.dumps(classes)}"
            )
        labels[image_id] = sorted(set(classes))
    return labels


def check_labels(root: str | Path, ids: list[str]) -> dict[str, list[int]]:
    """The image-level labels, refusing an image list that has images without labels."""
    labels = read_class_labels(root)
    missing = [i for i in ids if i not in labels]
    if missing:
        raise InputError(
            f"{voc_dirs(root)['labels']}: no image-level labels for {len(missing)} image(s), e.g. {missing[:3]}"
        )
    return labels


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"image id {key!r} appears twice")
        seen[key] = value
    return seen


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


def read_text_file(path: Path, what: str) -> str:
    """The text of a UTF-8 file; an InputError naming the file if it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {err.start}: {err.reason})") from err


def refuse_outside_link(path: str | Path, what: str) -> None:
    """Refuse a data file that is a symlink resolving outside its own folder (stages never follow one).

    A prepared data folder must be self-contained: what it links to elsewhere is not what DVC versions.
    """
    path = Path(path)
    if path.is_symlink():
        folder = path.parent.resolve()
        target = path.resolve()
        if not target.is_relative_to(folder):
            raise InputError(f"{path}: {what} is a symlink to {target}, outside its folder {folder}")


# Image modes that PIL's convert("RGB") maps without loss of meaning; 16-bit and float images would be clipped to
# 0..255 (and OpenCV would scale them instead), so the stages would not agree on their pixels: refused.
_IMAGE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa"}


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """PIL's lazy open with the checks every image read shares; errors become InputErrors naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    refuse_outside_link(path, "image")
    try:
        with Image.open(path) as img:
            if img.mode not in _IMAGE_MODES:
                raise InputError(
                    f"{path}: image mode {img.mode} (more than 8 bits per channel) cannot be read as 8-bit RGB "
                    "without changing its values; convert it to an 8-bit JPEG or PNG"
                )
            yield img
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: image too large to read safely ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot read image ({err})") from err


def check_image(path: str | Path) -> tuple[int, int]:
    """(H, W) from the header, after the checks of `load_image` that need no decoding (cheap up-front check)."""
    with _open_image(Path(path)) as img:
        return img.size[1], img.size[0]


def load_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3): the one image reader of every stage (mmseg's pipeline included, `LoadVOCImage`).

    As the official code: PIL, `convert("RGB")`, the EXIF orientation tag ignored (pixels as stored). A missing,
    unreadable, 16-bit/float or decompression-bomb-sized image raises an InputError naming the file.
    """
    with _open_image(Path(path)) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def load_mask(path: str | Path, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Label mask uint8 (H, W) with values in 0..20 or 255; a clear InputError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mask not found")
    refuse_outside_link(path, "mask")
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
