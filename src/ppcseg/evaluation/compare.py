"""compare-experiments: a method minus its baseline, per evaluated stage, with a paired bootstrap interval over images.

    ppcseg compare-experiments --params params.yaml \\
        --run EXPERIMENT SEED METRICS.json CONFUSION.npz [METRICS.json CONFUSION.npz ...]   (once per experiment x run)
        --pair BASELINE METHOD                                                             (once per compared pair)
        [--route EXPERIMENT seam|seam+ppc|eps|eps+ppc]       (for the paper's column; none: the column stays empty)
        --out results/comparison.csv

Each metrics JSON is an evaluation stage's row (eval-seeds, eval-masks, eval-seg single / msf-crf; its `stage` field
names the stage) and the .npz beside it that stage's per-image confusion matrices (`--out-confusion`,
evaluation/miou.py). The comparison.csv has one row per pair and stage (in the order of the baseline's first run):

- baseline_median, method_median: the median over runs of each side's mIoU (%), as in results/voc_miou.csv;
- diff_median, diff_min, diff_max: the median, min and max over runs of the per-run difference method - baseline,
  runs paired by seed (both experiments must have the same seeds);
- ci_low, ci_high: a paired bootstrap interval (`comparison.confidence`, 95 % by default) of diff_median over images.
  Resample b draws N image indices with replacement (numpy default_rng(`comparison.bootstrap_seed`), B =
  `comparison.bootstrap_resamples` resamples; the same indices for every pair and stage of N images). With these
  same indices on both sides and in every run, each run's difference is recomputed from the summed per-image
  confusion matrices (mIoU of the resampled image set, not a mean of per-image mIoUs), then the median over runs is
  taken: the interval is for the very statistic of diff_median, and shows how much it depends on which images were
  evaluated; the seed-to-seed spread is diff_min and diff_max. The interval's ends are order statistics: the k-th
  smallest and k-th largest of the B values, k = floor(B (1 - confidence) / 2) + 1, so swapping the pair flips the
  interval exactly and an experiment compared with itself gives [0, 0];
- paper_diff, paper: the paper's stated difference (published figures only) for a pair of routes and a stage (and
  its split), from `--route`; negative for a pair given the other way round; empty otherwise;
- settings: the bootstrap settings;
- diff_<class>: per class, the median over runs of the per-run IoU difference (runs where either side has no IoU for
  the class left out; empty if none is left).

Refused, one line naming the file, nothing written: a missing or unreadable file, a confusion file whose images'
matrices do not sum to its metrics JSON's mIoU or count, a NaN mIoU, a pair whose image ids differ (or that differ
between runs), whose stages, splits or seeds differ, or an experiment named in --pair or --route but given no --run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.data.voc import CLASSES
from ppcseg.evaluation.miou import iou_from_confusion, mean_iou, read_confusions
from ppcseg.evaluation.results import COMPARISON_COLUMNS as CSV_COLUMNS
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import write_text

PARAMS_KEYS: tuple[str, ...] = ("comparison",)
ROUTES = ("seam", "seam+ppc", "eps", "eps+ppc")
# The paper's published mIoU (%) for (baseline route, method route, stage, split): (baseline, method, where), each the
# median of three runs. SEAM's seeds on train: the abstract of arXiv 2110.07110 (55.4 -> 61.5). EPS's DeepLab-v2 + CRF
# on val: 70.9 -> 72.6 as issue #29 quotes the paper's table (72.6 is also the authors' README figure for their
# released EPS + PPC model); the abstract gives EPS only on the test set (70.8 -> 73.6), which no stage evaluates.
# No figure for the pseudo-masks or the single-scale segmentation: none found in the paper's text.
PAPER: dict[tuple[str, str, str, str], tuple[float, float, str]] = {
    ("seam", "seam+ppc", "seed", "train"): (55.4, 61.5, "SEAM seeds, VOC train"),
    ("eps", "eps+ppc", "segmentation-msf-crf", "val"): (70.9, 72.6, "EPS DeepLab-v2 + CRF, VOC val"),
}
# Resamples are drawn and summed this many at a time: memory stays at a few MB whatever B is.
CHUNK = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        nargs="+",
        action="append",
        required=True,
        metavar="EXPERIMENT SEED FILES",
        help="an experiment's name, a run's seed, then per evaluated stage its metrics JSON and confusion .npz; "
        "repeat for each experiment and run",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        required=True,
        metavar=("BASELINE", "METHOD"),
        help="compare METHOD against BASELINE (method - baseline); repeat for each pair",
    )
    parser.add_argument(
        "--route",
        nargs=2,
        action="append",
        default=[],
        metavar=("EXPERIMENT", "ROUTE"),
        help=f"an experiment's route ({', '.join(ROUTES)}), to show the paper's difference for its pairs",
    )
    parser.add_argument("--out", required=True, help="output table (results/comparison.csv)")


@dataclass(frozen=True)
class StageResult:
    """One stage of one run: where it came from, its images and their confusion matrices."""

    metrics: Path
    confusion_file: Path
    split: str
    ids: list[str]
    confusion: np.ndarray  # (N, C, C) or (N, C, C + 1), int64

    def iou(self) -> np.ndarray:
        return iou_from_confusion(self.confusion.sum(axis=0))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: metrics file not found")
    try:
        row = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read metrics file ({err})") from err
    if (
        not isinstance(row, dict)
        or not {"stage", "split", "mIoU", "n_images"} <= set(row)
        or not isinstance(row["mIoU"], int | float | None)
    ):
        raise InputError(f"{path}: not a metrics row (stage, split, mIoU, n_images)")
    return row


def load_stage(metrics: Path, confusion_file: Path) -> tuple[str, StageResult]:
    """(stage name, its result) of a metrics JSON and its confusion file, which must agree: the same number of
    images, and the summed matrices giving the JSON's mIoU (a stale or foreign .npz would not)."""
    row = _read_json(metrics)
    ids, confusion = read_confusions(confusion_file)
    if confusion.shape[1] != len(CLASSES):
        raise InputError(f"{confusion_file}: matrices of {confusion.shape[1]} classes, {len(CLASSES)} expected")
    result = StageResult(metrics, confusion_file, str(row["split"]), ids, confusion)
    miou = mean_iou(result.iou())
    for path, value in ((metrics, row["mIoU"]), (confusion_file, miou)):
        if value is None or not math.isfinite(value):
            raise InputError(f"{path}: mIoU is NaN (no class in ground truth or prediction)")
    if len(ids) != row["n_images"] or round(100 * miou, 2) != float(row["mIoU"]):
        raise InputError(
            f"{confusion_file}: {len(ids)} images of mIoU {100 * miou:.2f}, but {metrics} reports "
            f"{row['n_images']} images of mIoU {row['mIoU']} (files of different evaluations)"
        )
    return str(row["stage"]), result


def parse_runs(runs: list[list[str]]) -> dict[str, dict[int, dict[str, StageResult]]]:
    """experiment -> seed -> stage -> result, from the --run groups."""
    out: dict[str, dict[int, dict[str, StageResult]]] = {}
    for group in runs:
        if len(group) < 4 or len(group) % 2 or not group[1].isdigit():
            raise InputError(
                f"--run {' '.join(group[:2])}: give an experiment, a run's seed, then pairs of metrics JSON and "
                "confusion .npz"
            )
        experiment, seed, files = group[0], int(group[1]), group[2:]
        if seed in out.setdefault(experiment, {}):
            raise InputError(f"--run {experiment} {seed}: run given twice")
        stages: dict[str, StageResult] = {}
        for metrics, confusion_file in zip(files[::2], files[1::2], strict=True):
            stage, result = load_stage(Path(metrics), Path(confusion_file))
            if stage in stages:
                raise InputError(f"{metrics}: stage '{stage}' given twice for run {seed} of {experiment}")
            stages[stage] = result
        out[experiment][seed] = stages
    return out


def resample_indices(n_images: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's image indices, (rows, n_images) per chunk of at most CHUNK resamples, in order."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, CHUNK):
        yield rng.integers(0, n_images, size=(min(CHUNK, resamples - start), n_images))


def _miou_rows(confusion: np.ndarray) -> np.ndarray:
    """mIoU of each of (..., C, C[+1]) matrices: mean over the classes with an IoU (mean_iou, vectorised)."""
    iou = iou_from_confusion(confusion)
    valid = ~np.isnan(iou)
    count = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(valid, iou, 0.0).sum(axis=-1) / count, np.nan)


def bootstrap_differences(
    baseline: list[np.ndarray], method: list[np.ndarray], resamples: int, seed: int
) -> np.ndarray:
    """B values of the median over runs of (method - baseline) mIoU (%), one per resample of the images.

    `baseline[r]`, `method[r]`: run r's per-image matrices (N, C, C[+1]) of each side, runs paired, images aligned.
    """
    n_images = baseline[0].shape[0]
    shape = baseline[0].shape[1:]
    flat = [np.stack([m.reshape(n_images, -1) for m in side], axis=1).astype(np.float64) for side in (baseline, method)]
    out = []
    for indices in resample_indices(n_images, resamples, seed):
        # How often each image is drawn; weights @ matrices sums the drawn images' matrices. Exact in float64: every
        # sum is an integer below 2**53 (at most N times the largest image's pixel count).
        rows = indices.shape[0]
        offsets = (np.arange(rows)[:, None] * n_images + indices).reshape(-1)
        weights = np.bincount(offsets, minlength=rows * n_images).reshape(rows, n_images).astype(np.float64)
        mious = [_miou_rows((weights @ f.reshape(n_images, -1)).reshape(-1, len(baseline), *shape)) for f in flat]
        out.append(np.median(100 * mious[1] - 100 * mious[0], axis=1))
    return np.concatenate(out)


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The k-th smallest and the k-th largest of the B values, k = floor(B (1 - confidence) / 2) + 1: the same
    distance from each end, so negating the values exactly negates and swaps the ends."""
    ordered = np.sort(values)
    skip = math.floor(len(ordered) * (1 - confidence) / 2 + 1e-9)  # 1e-9: 1 - 0.9 is 0.0999...98 in binary
    return float(ordered[skip]), float(ordered[len(ordered) - 1 - skip])


def paper_difference(routes: dict[str, str], baseline: str, method: str, stage: str, split: str) -> tuple[str, str]:
    """(the paper's difference method - baseline, its source) as the CSV writes them; empty when not published."""
    key = (routes.get(baseline, ""), routes.get(method, ""), stage, split)
    if key in PAPER:
        low, high, where = PAPER[key]
        return f"{high - low:.1f}", f"{low} -> {high} ({where})"
    swapped = (key[1], key[0], stage, split)
    if swapped in PAPER:
        low, high, where = PAPER[swapped]
        return f"{low - high:.1f}", f"{high} -> {low} ({where}, pair reversed)"
    return "", ""


def _check_pair(
    baseline: str, method: str, sides: tuple[dict[int, dict[str, StageResult]], dict[int, dict[str, StageResult]]]
) -> list[int]:
    """The pair's common seeds, after refusing runs, stages, splits or images that do not match."""
    base, meth = sides
    if sorted(base) != sorted(meth):
        raise InputError(f"--pair {baseline} {method}: runs {sorted(base)} against runs {sorted(meth)}")
    seeds = sorted(base)
    reference = base[seeds[0]]
    for name, runs in ((baseline, base), (method, meth)):
        for seed in seeds:
            stages = runs[seed]
            if set(stages) != set(reference):
                culprit = next(iter(stages.values())).metrics  # every --run gives at least one stage
                raise InputError(
                    f"{culprit}: run {seed} of {name} has stages {list(stages)}, {list(reference)} expected"
                )
            for stage, result in stages.items():
                expected = reference[stage]
                if result.split != expected.split:
                    raise InputError(f"{result.metrics}: split {result.split}, {expected.metrics} has {expected.split}")
                if result.ids != expected.ids:
                    raise InputError(
                        f"{result.confusion_file}: its image ids differ from those of {expected.confusion_file}"
                    )
                if result.confusion.shape != expected.confusion.shape:
                    raise InputError(
                        f"{result.confusion_file}: matrices {result.confusion.shape[1:]}, "
                        f"{expected.confusion_file} has {expected.confusion.shape[1:]}"
                    )
    return seeds


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value + 0.0:.2f}"  # + 0.0: no "-0.00"


def compare(
    experiments: dict[str, dict[int, dict[str, StageResult]]],
    pairs: list[tuple[str, str]],
    routes: dict[str, str],
    settings: dict[str, Any],
) -> list[dict[str, str]]:
    """The comparison.csv rows (CSV_COLUMNS, as strings) of every pair and stage."""
    resamples, seed, confidence = (
        int(settings["bootstrap_resamples"]),
        int(settings["bootstrap_seed"]),
        float(settings["confidence"]),
    )
    for name in [*(n for pair in pairs for n in pair), *routes]:
        if name not in experiments:
            raise InputError(f"experiment '{name}' has no --run (experiments given: {', '.join(experiments)})")
    rows = []
    for baseline, method in pairs:
        seeds = _check_pair(baseline, method, (experiments[baseline], experiments[method]))
        for stage, reference in experiments[baseline][seeds[0]].items():
            base = [experiments[baseline][s][stage] for s in seeds]
            meth = [experiments[method][s][stage] for s in seeds]
            base_iou = np.stack([r.iou() for r in base])
            meth_iou = np.stack([r.iou() for r in meth])
            # In percent as metrics_row computes it, so that each run's value is its metrics JSON's before rounding.
            base_miou = [100 * mean_iou(i) for i in base_iou]
            meth_miou = [100 * mean_iou(i) for i in meth_iou]
            diffs = [m - b for b, m in zip(base_miou, meth_miou, strict=True)]
            boot = bootstrap_differences([r.confusion for r in base], [r.confusion for r in meth], resamples, seed)
            if np.isnan(boot).any():
                raise InputError(f"{reference.confusion_file}: a resample of its images has no class (NaN mIoU)")
            low, high = interval(boot, confidence)
            paper_diff, paper = paper_difference(routes, baseline, method, stage, reference.split)
            row = {
                "baseline": baseline,
                "method": method,
                "stage": stage,
                "split": reference.split,
                "n_images": str(len(reference.ids)),
                "runs": " ".join(str(s) for s in seeds),
                "baseline_median": _fmt(statistics.median(base_miou)),
                "method_median": _fmt(statistics.median(meth_miou)),
                "diff_median": _fmt(statistics.median(diffs)),
                "diff_min": _fmt(min(diffs)),
                "diff_max": _fmt(max(diffs)),
                "ci_low": _fmt(low),
                "ci_high": _fmt(high),
                "paper_diff": paper_diff,
                "paper": paper,
                "settings": f"bootstrap_resamples={resamples};bootstrap_seed={seed};confidence={confidence:g}",
            }
            class_diffs = 100 * meth_iou - 100 * base_iou  # NaN where either side has no IoU for the class
            for c, name in enumerate(CLASSES):
                present = class_diffs[:, c][~np.isnan(class_diffs[:, c])]
                row[f"diff_{name}"] = _fmt(statistics.median(present.tolist())) if present.size else ""
            rows.append(row)
    return rows


def comparison_csv(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    routes: dict[str, str] = {}
    for experiment, route in args.route:
        if route not in ROUTES:
            raise InputError(f"--route {experiment} {route}: route must be one of {', '.join(ROUTES)}")
        routes[experiment] = route
    experiments = parse_runs(args.run)
    rows = compare(experiments, [tuple(p) for p in args.pair], routes, params["comparison"])
    write_text(args.out, comparison_csv(rows))
    for row in rows:
        print(
            f"{row['method']} - {row['baseline']}  {row['stage']:>22} {row['split']:>6}  "
            f"{row['diff_median']:>7} [{row['ci_low']}, {row['ci_high']}]  paper {row['paper_diff'] or '-'}"
        )
