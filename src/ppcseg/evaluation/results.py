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
# results/comparison.csv (compare-experiments writes it, the report reads it): one row per compared pair and stage.
COMPARISON_COLUMNS = [
    "baseline", "method", "stage", "split", "n_images", "runs", "baseline_median", "method_median", "diff_median",
    "diff_min", "diff_max", "ci_low", "ci_high", "paper_diff", "paper", "settings", *(f"diff_{c}" for c in CLASSES),
]  # fmt: skip
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


ROW_KEYS = ("stage", "split", "iou", "mIoU", "n_images", "settings")


def read_metrics_row(path: str | Path) -> dict[str, Any]:
    """A metric row written by an evaluation stage, checked: InputError naming the file and what is wrong.

    The row comes from another process and may be truncated (a crash, a full disk) or hand-edited; Python's json
    also reads NaN and Infinity, which would pass into the summary rows as `nan`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise InputError(f"{path}: metrics row not found") from err
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a metrics row (not UTF-8 text, byte {err.start})") from err
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: not a metrics row (invalid JSON: {err.msg} at line {err.lineno} column {err.colno}); "
            "run its evaluation stage again"
        ) from err
    problem = row_problem(row)
    if problem:
        raise InputError(f"{path}: not a metrics row: {problem}")
    return row


def row_problem(row: Any) -> str | None:
    """What makes `row` unlike the rows `metrics_row` writes (None if nothing)."""
    if not isinstance(row, dict):
        return f"it holds a {type(row).__name__}, not a JSON object"
    missing = [key for key in ROW_KEYS if key not in row]
    if missing:
        return f"{missing[0]!r} is missing"
    for key in ("stage", "split"):
        if not isinstance(row[key], str) or not row[key]:
            return f"{key}: {row[key]!r} is not a name"
    iou = row["iou"]
    if not isinstance(iou, dict):
        return f"iou: {type(iou).__name__} is not a mapping of class names"
    absent = [c for c in CLASSES if c not in iou]
    if absent:
        return f"iou: class {absent[0]!r} is missing"
    unknown = [c for c in iou if c not in CLASSES]
    if unknown:
        return f"iou: {unknown[0]!r} is not a VOC class"
    for name in CLASSES:
        if iou[name] is not None and (problem := _percent_problem(iou[name])):  # None: class absent, as written
            return f"iou.{name}: {problem}"
    if problem := _percent_problem(row["mIoU"]):
        return f"mIoU: {problem}"
    count = row["n_images"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return f"n_images: {count!r} is not a positive integer"
    if not isinstance(row["settings"], dict):
        return f"settings: {type(row['settings']).__name__} is not a mapping"
    return None


def _percent_problem(value: Any) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"{value!r} is not a number"
    if not math.isfinite(value):
        return f"{value} is not finite"
    if not 0 <= value <= 100:
        return f"{value} is outside [0, 100] (IoU in percent)"
    return None


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
        first = per_run[0]
        for other in per_run[1:]:
            if other["n_images"] != first["n_images"]:
                # A median over runs scored on other images would compare different things.
                raise InputError(
                    f"{key[0]}/{key[1]}: run {other['run']} was evaluated on {other['n_images']} images, run "
                    f"{first['run']} on {first['n_images']}; runs on different images are not summarised together "
                    "(evaluate every run on the same split)"
                )
        table += per_run
        if len(per_run) > 1:
            table += summary_rows(per_run)
    return table


def rows_keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(row["stage"], row["split"]) for row in rows]


def collect(runs: dict[int, list[str | Path]], csv_path: str | Path, json_path: str | Path) -> list[dict[str, Any]]:
    """Write the metric rows of every run (seed -> its row files) into one CSV (21 IoUs, mean, count, settings; the
    median, min and max rows with two or more runs) and one JSON for `dvc metrics`."""
    return collect_experiments({"": runs}, csv_path, json_path)


def collect_experiments(
    experiments: dict[str, dict[int, list[str | Path]]], csv_path: str | Path, json_path: str | Path
) -> list[dict[str, Any]]:
    """`collect` for several experiments (name -> its runs), each summarised over its own runs; the CSV then starts
    with an `experiment` column and the metrics keys with the experiment. The name "" alone is the table without
    experiments."""
    # Every row is read and checked before anything is written: a refusal leaves the previous table as it was.
    table = [
        row | {"experiment": name}
        for name, runs in experiments.items()
        for row in table_rows({seed: [read_metrics_row(p) for p in paths] for seed, paths in runs.items()})
    ]
    named = list(experiments) != [""]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*(["experiment"] if named else []), *CSV_COLUMNS])
    for row in table:
        ious = ["" if row["iou"][c] is None else f"{row['iou'][c]:.2f}" for c in CLASSES]
        settings = ";".join(f"{k}={v}" for k, v in row["settings"].items())
        writer.writerow(
            [
                *([row["experiment"]] if named else []),
                *[row["stage"], row["run"], row["split"], *ious, f"{row['mIoU']:.2f}", row["n_images"], settings],
            ]
        )
    write_text(csv_path, buffer.getvalue())
    metrics = {
        f"{row['experiment'] + '/' if named else ''}{row['stage']}/{row['split']}/{row['run']}": {
            "mIoU": row["mIoU"],
            "n_images": row["n_images"],
            "iou": row["iou"],
        }
        for row in table
    }
    metrics["_note"] = (
        "IoU in percent; null = class absent from both ground truth and prediction, left out of mIoU; keys are "
        f"{'experiment/' if named else ''}stage/split/run (the run's seed, or median, min, max over the runs)"
    )
    write_json(json_path, metrics)
    return table
