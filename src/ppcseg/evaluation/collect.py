"""collect-results: the metric rows of every evaluated stage into results/voc_miou.csv and results/metrics.json."""

from __future__ import annotations

import argparse
from typing import Any

from ppcseg.evaluation.results import collect

PARAMS_KEYS: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", nargs="+", required=True, help="metric row JSON files, in table order")
    parser.add_argument("--out", required=True, help="output table (results/voc_miou.csv)")
    parser.add_argument("--out-metrics", required=True, help="output metrics for `dvc metrics show` (JSON)")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    rows = collect(args.rows, args.out, args.out_metrics)
    for row in rows:
        print(f"{row['stage']:>22} {row['split']:>6}  mIoU {row['mIoU']:6.2f}  ({row['n_images']} images)")
