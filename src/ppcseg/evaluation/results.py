"""Metric rows: one JSON file per evaluated stage and split, collected into results/voc_miou.csv."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.voc import CLASSES
from ppcseg.evaluation.miou import mean_iou
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import write_json, write_text

CSV_COLUMNS = ["stage", "run", "split", *CLASSES, "mIoU", "n_images", "settings"]
# With two or more runs, each stage also gets these rows (`run` column), each column's statistic over the runs.
SUMMARIES = ("median", "min", "max")


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


def _statistic(name: str, values: list[float]) -> float:
    """The median (of an even count: the mean of the two middle values), min or max, rounded as the rows are."""
    function = {"median": statistics.median, "min": min, "max": max}[name]
    return round(float(function(values)), 2)


def _summary_settings(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Settings equal in every run as they are; numbers that differ (the GT-tuned threshold and mIoU) as the
    statistic; other differing values are left out."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [run.get(key) for run in runs]
        if all(v == value for v in values):
            out[key] = value
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out[key] = _statistic(name, values)
    return out


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The median, min and max rows of the per-run rows of one stage and split: each class IoU and the mIoU taken
    independently (the median row's mIoU is the median of the runs' mIoUs, not the mean of its class IoUs). A class
    absent from some runs (no ground truth, no prediction) is summarised over the runs that have it."""
    out = []
    for name in SUMMARIES:
        iou = {}
        for c in CLASSES:
            values = [row["iou"][c] for row in rows if row["iou"][c] is not None]
            iou[c] = _statistic(name, values) if values else None
        out.append(
            {
                "stage": rows[0]["stage"],
                "run": name,
                "split": rows[0]["split"],
                "iou": iou,
                "mIoU": _statistic(name, [row["mIoU"] for row in rows]),
                "n_images": rows[0]["n_images"],
                "settings": _summary_settings(name, [row["settings"] for row in rows]),
            }
        )
    return out


def table_rows(runs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per stage and split (in the order of the first run's rows): one row per run, then with two or more runs the
    median, min and max rows. Every run must hold the same stages and splits."""
    keys = rows_keys(next(iter(runs.values())))
    by_run = {}
    for seed, rows in runs.items():
        if rows_keys(rows) != keys:
            raise InputError(f"run {seed}: its metric rows are {rows_keys(rows)}, the first run's are {keys}")
        by_run[seed] = dict(zip(keys, rows, strict=True))
    table = []
    for key in keys:
        per_run = [by_run[seed][key] | {"run": seed} for seed in runs]
        table += per_run
        if len(per_run) > 1:
            table += summary_rows(per_run)
    return table


def rows_keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(row["stage"], row["split"]) for row in rows]


def collect(runs: dict[int, list[str | Path]], csv_path: str | Path, json_path: str | Path) -> list[dict[str, Any]]:
    """Write the metric rows of every run (seed -> its row files) into one CSV (21 IoUs, mean, count, settings; the
    median, min and max rows with two or more runs) and one JSON for `dvc metrics`."""
    table = table_rows({seed: [json.loads(Path(p).read_text()) for p in paths] for seed, paths in runs.items()})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table:
        ious = ["" if row["iou"][c] is None else f"{row['iou'][c]:.2f}" for c in CLASSES]
        settings = ";".join(f"{k}={v}" for k, v in row["settings"].items())
        writer.writerow(
            [row["stage"], row["run"], row["split"], *ious, f"{row['mIoU']:.2f}", row["n_images"], settings]
        )
    write_text(csv_path, buffer.getvalue())
    metrics = {
        f"{row['stage']}/{row['split']}/{row['run']}": {
            "mIoU": row["mIoU"],
            "n_images": row["n_images"],
            "iou": row["iou"],
        }
        for row in table
    }
    metrics["_note"] = (
        "IoU in percent; null = class absent from both ground truth and prediction, left out of mIoU; keys are "
        "stage/split/run (the run's seed, or median, min, max over the runs)"
    )
    write_json(json_path, metrics)
    return table
