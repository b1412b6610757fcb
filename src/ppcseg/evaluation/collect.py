"""collect-results: the metric rows of every evaluated stage into results/voc_miou.csv and results/metrics.json."""

from __future__ import annotations

import argparse
from typing import Any

from ppcseg.evaluation.results import collect
from ppcseg.utils.errors import InputError

PARAMS_KEYS: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        nargs="+",
        action="append",
        required=True,
        metavar="SEED ROW",
        help="a run's seed, then its metric row JSON files in table order; repeat for each run (params `runs`)",
    )
    parser.add_argument("--out", required=True, help="output table (results/voc_miou.csv)")
    parser.add_argument("--out-metrics", required=True, help="output metrics for `dvc metrics show` (JSON)")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    runs: dict[int, list[str]] = {}
    for seed, *rows in args.run:
        # isdigit alone takes '٣' or '３' (and int() reads them as 3) and '²' (which int() refuses with a traceback).
        if not (seed.isascii() and seed.isdigit()) or not rows:
            raise InputError(
                f"--run {seed}: give a run's seed (a non-negative integer in ASCII digits 0-9), then its metric rows"
            )
        if int(seed) in runs:
            raise InputError(f"--run {seed}: run given twice")
        runs[int(seed)] = rows
    rows = collect(runs, args.out, args.out_metrics)
    for row in rows:
        print(
            f"{row['stage']:>22} {row['run']:>6} {row['split']:>6}  mIoU {row['mIoU']:6.2f}  ({row['n_images']} images)"
        )
