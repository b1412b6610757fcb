"""collect-results: the metric rows of every evaluated stage into results/voc_miou.csv and results/metrics.json; with
`--experiment-run` (params `experiments`) the table gains an `experiment` column."""

from __future__ import annotations

import argparse
from typing import Any

from ppcseg.evaluation.results import collect_experiments
from ppcseg.utils.errors import InputError

PARAMS_KEYS: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    runs = parser.add_mutually_exclusive_group(required=True)
    runs.add_argument(
        "--run",
        nargs="+",
        action="append",
        metavar="SEED ROW",
        help="a run's seed, then its metric row JSON files in table order; repeat for each run (params `runs`)",
    )
    runs.add_argument(
        "--experiment-run",
        nargs="+",
        action="append",
        metavar="EXPERIMENT SEED ROW",
        help="an experiment's name, a run's seed, then its metric rows; repeat for each experiment and run",
    )
    parser.add_argument("--out", required=True, help="output table (results/voc_miou.csv)")
    parser.add_argument("--out-metrics", required=True, help="output metrics for `dvc metrics show` (JSON)")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    given = [("", *values) for values in args.run] if args.run else args.experiment_run
    experiments: dict[str, dict[int, list[str]]] = {}
    for name, *values in given:
        flag = f"--experiment-run {name}" if args.experiment_run else "--run"
        seed, *rows = values or [""]
        # isdigit alone takes '٣' or '３' (and int() reads them as 3) and '²' (which int() refuses with a traceback).
        if not (seed.isascii() and seed.isdigit()) or not rows:
            raise InputError(
                f"{flag} {seed}: give a run's seed (a non-negative integer in ASCII digits 0-9), then its metric rows"
            )
        runs = experiments.setdefault(name, {})
        if int(seed) in runs:
            raise InputError(f"{flag} {seed}: run given twice")
        runs[int(seed)] = rows
    rows = collect_experiments(experiments, args.out, args.out_metrics)
    for row in rows:
        print(
            f"{row['experiment']:>12} {row['stage']:>22} {row['run']:>6} {row['split']:>6}  mIoU {row['mIoU']:6.2f}  "
            f"({row['n_images']} images)"
        )
