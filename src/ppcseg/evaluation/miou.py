"""mIoU as the project defines it: a confusion matrix summed over the whole image set.

IoU_c = TP_c / (GT_c + Pred_c - TP_c), GT 255 ignored; a class with no GT and no prediction has IoU NaN and is
left out of the mean (the results file says so).
"""

from __future__ import annotations

import numpy as np

from ppcseg.data.voc import IGNORE_INDEX, NUM_CLASSES


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix, rows = ground truth, columns = prediction (torchvision style).

    With `unlabelled=True` a prediction may be 255 (a pseudo-mask that leaves pixels unlabelled): an extra column
    counts those pixels, wrong for their ground-truth class and no class's prediction, as the official evaluation.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, unlabelled: bool = False) -> None:
        self.num_classes = num_classes
        self.unlabelled = unlabelled
        self.matrix = np.zeros((num_classes, num_classes + unlabelled), dtype=np.int64)

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
        self.matrix += np.bincount(gt * columns + pred, minlength=self.num_classes * columns).reshape(
            self.num_classes, columns
        )

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
