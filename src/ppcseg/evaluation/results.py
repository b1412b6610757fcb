"""Metric rows: one JSON file per evaluated stage and split, collected into results/voc_miou.csv."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.voc import CLASSES
from ppcseg.evaluation.miou import mean_iou
from ppcseg.utils.io import write_json, write_text

CSV_COLUMNS = ["stage", "split", *CLASSES, "mIoU", "n_images", "settings"]


def metrics_row(stage: str, split: str, iou: np.ndarray, n_images: int, settings: dict[str, Any]) -> dict[str, Any]:
    """A row in percent with two decimals; NaN classes (no GT, no prediction) become None."""
    iou = np.asarray(iou, dtype=np.float64)
    miou = mean_iou(iou)
    return {
        "stage": stage,
        "split": split,
        "iou": {
            name: (round(100 * float(v), 2) if not math.isnan(v) else None)
            for name, v in zip(CLASSES, iou, strict=True)
        },
        "mIoU": round(100 * miou, 2),
        "n_images": int(n_images),
        "settings": settings,
    }


def write_metrics_row(path: str | Path, row: dict[str, Any]) -> None:
    write_json(path, row)


def collect(rows_paths: list[str | Path], csv_path: str | Path, json_path: str | Path) -> list[dict[str, Any]]:
    """Write the metric rows into one CSV (21 IoUs, mean, count, settings) and one JSON for `dvc metrics`."""
    rows = [json.loads(Path(p).read_text()) for p in rows_paths]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        ious = ["" if row["iou"][c] is None else f"{row['iou'][c]:.2f}" for c in CLASSES]
        settings = ";".join(f"{k}={v}" for k, v in row["settings"].items())
        writer.writerow([row["stage"], row["split"], *ious, f"{row['mIoU']:.2f}", row["n_images"], settings])
    write_text(csv_path, buffer.getvalue())
    metrics = {
        f"{row['stage']}/{row['split']}": {"mIoU": row["mIoU"], "n_images": row["n_images"], "iou": row["iou"]}
        for row in rows
    }
    metrics["_note"] = "IoU in percent; null = class absent from both ground truth and prediction, left out of mIoU"
    write_json(json_path, metrics)
    return rows
