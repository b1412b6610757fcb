"""mIoU as the project defines it: a confusion matrix summed over the whole image set.

IoU_c = TP_c / (GT_c + Pred_c - TP_c), GT 255 ignored; a class with no GT and no prediction has IoU NaN and is
left out of the mean (the results file says so).

The evaluation stages can also keep each image's matrix (`--out-confusion`): one .npz with `ids` (the image ids in
the evaluated order) and `confusion` (int64 (N, C, C), or (N, C, C + 1) where the stage counts unlabelled
predictions), whose sum over images is the stage's matrix. compare-experiments resamples images from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ppcseg.data.voc import IGNORE_INDEX, NUM_CLASSES
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_path, read_npz


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix, rows = ground truth, columns = prediction (torchvision style).

    With `unlabelled=True` a prediction may be 255 (a pseudo-mask that leaves pixels unlabelled): an extra column
    counts those pixels, wrong for their ground-truth class and no class's prediction, as the official evaluation.

    With `keep_images=True` each update's own matrix is kept too (`images()`), for per-image statistics.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, unlabelled: bool = False, keep_images: bool = False) -> None:
        self.num_classes = num_classes
        self.unlabelled = unlabelled
        self.matrix = np.zeros((num_classes, num_classes + unlabelled), dtype=np.int64)
        self.keep_images = keep_images
        self._images: list[np.ndarray] = []

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        if gt.shape != pred.shape:
            raise ValueError(f"ground truth shape {gt.shape} != prediction shape {pred.shape}")
        gt = gt.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        keep = gt != IGNORE_INDEX
        gt, pred = gt[keep], pred[keep]
        if self.unlabelled:
            pred[pred == IGNORE_INDEX] = self.num_classes
        columns = self.matrix.shape[1]
        if gt.size and (gt.max() >= self.num_classes or pred.max() >= columns or pred.min() < 0):
            raise ValueError("labels outside 0..num_classes-1 (other than 255 in ground truth)")
        image = np.bincount(gt * columns + pred, minlength=self.num_classes * columns).reshape(
            self.num_classes, columns
        )
        self.matrix += image
        if self.keep_images:
            self._images.append(image)

    def images(self) -> np.ndarray:
        """The kept per-image matrices, (N, C, C) or (N, C, C + 1), in update order."""
        if not self.keep_images:
            raise ValueError("per-image matrices were not kept (keep_images=False)")
        return np.stack(self._images) if self._images else np.zeros((0, *self.matrix.shape), dtype=np.int64)

    def iou(self) -> np.ndarray:
        return iou_from_confusion(self.matrix)

    def miou(self) -> float:
        return mean_iou(self.iou())


def iou_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """Per-class IoU from a (..., C, C) confusion matrix, or (..., C, C + 1) whose last column counts unlabelled
    predictions; NaN where a class has no GT and no prediction."""
    classes = matrix.shape[-2]
    tp = np.diagonal(matrix, axis1=-2, axis2=-1).astype(np.float64)
    gt = matrix.sum(axis=-1).astype(np.float64)
    pred = matrix[..., :classes].sum(axis=-2).astype(np.float64)
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(iou: np.ndarray) -> float:
    """Mean over classes that are not NaN (classes absent from both GT and prediction)."""
    iou = np.asarray(iou, dtype=np.float64)
    valid = ~np.isnan(iou)
    return float(iou[valid].mean()) if valid.any() else float("nan")


def write_confusions(path: str | Path, ids: Sequence[str], confusion: np.ndarray) -> None:
    """Atomically write per-image confusion matrices: `ids` (str (N,)) and `confusion` (int64 (N, C, C[+1]))."""
    confusion = np.asarray(confusion)
    if confusion.ndim != 3 or confusion.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but confusion matrices of shape {confusion.shape}")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, ids=np.asarray(list(ids), dtype=str), confusion=confusion.astype(np.int64))


def read_confusions(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(ids, confusion int64 (N, C, C) or (N, C, C + 1)) of a file written by write_confusions; InputError naming
    the file when it is missing, unreadable or not of that format."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: confusion file not found")
    ids, confusion = read_npz(path, ("ids", "confusion"), "confusion file")
    if ids.ndim != 1 or ids.dtype.kind != "U" or len(set(ids.tolist())) != ids.size:
        raise InputError(f"{path}: 'ids' must be distinct image ids (1-d strings), got {ids.dtype} {ids.shape}")
    if (
        confusion.dtype != np.int64
        or confusion.ndim != 3
        or confusion.shape[0] != ids.size
        or confusion.shape[2] not in (confusion.shape[1], confusion.shape[1] + 1)
    ):
        raise InputError(
            f"{path}: 'confusion' must be int64 ({ids.size}, C, C) or ({ids.size}, C, C + 1), "
            f"got {confusion.dtype} {confusion.shape}"
        )
    if confusion.size and confusion.min() < 0:
        raise InputError(f"{path}: 'confusion' holds negative counts")
    return ids.tolist(), confusion
