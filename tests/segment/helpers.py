"""The segmentation tests' params overlay (a few iterations of the demo's network) and train-seg's command line."""

from __future__ import annotations

from pathlib import Path

from ppcseg.cli import main

ITERS = 4
OVERLAY = f"""
segmentation:
  config: deeplabv1-largefov_tiny_1xb4-500_voc12pseudo-96x96.py
  iters: {ITERS}
  batch_size: 2
  crop_size: 48
  lr: 0.01
  test:
    scales: [0.75, 1.0]
"""


def params_args(files: list[str]) -> list[str]:
    return [arg for path in files for arg in ("--params", path)]


def train_cli(voc_root: Path, files: list[str], work: Path, out: Path) -> int:
    return main(
        [
            "train-seg",
            *params_args(files),
            "--threads",
            "2",
            "--data",
            str(voc_root),
            "--masks",
            str(voc_root / "SegmentationClassAug"),
            "--work-dir",
            str(work),
            "--out",
            str(out),
        ]
    )
