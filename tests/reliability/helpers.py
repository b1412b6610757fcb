"""What the reliability tests share: running a stage through the real CLI entry point, the tiny CAM settings of the
bad-input corpus (tests/reliability/conftest.py), and the check of a clear failure (exit 2, one message)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from ppcseg.cli import main
from ppcseg.config import REPO_ROOT

PARAMS = str(REPO_ROOT / "params.yaml")
TINY_CAM = {
    "backbone": "tiny",
    "pretrained": False,
    "crop_size": 64,
    "view2_size": 32,
    "resize_long": [64, 80],
    "batch_size": 4,
    "max_steps": 4,
    "num_workers": 0,
    "checkpoint_every": 2,
}


def cli(stage: str, overlay: Path | None, *args) -> tuple[int, str]:
    """Run a stage in-process; return (exit status, what it printed to stderr)."""
    import io

    err = io.StringIO()
    params = ["--params", PARAMS] + (["--params", str(overlay)] if overlay else [])
    with contextlib.redirect_stderr(err):
        status = main([stage, *params, *map(str, args)])
    return status, err.getvalue()


def copy_root(corpus, tmp_path) -> Path:
    _, root, _ = corpus
    dest = tmp_path / "VOC2012"
    shutil.copytree(root, dest)
    return dest


def assert_clear_failure(status: int, stderr: str, *needles: str) -> None:
    assert status == 2, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr  # one message, no traceback
    print(f"\nMESSAGE {lines[0]}")
    for needle in needles:
        assert needle in lines[0], lines[0]


def eval_seeds(root: Path, cams: Path, out: Path, overlay: Path | None = None) -> tuple[int, str]:
    return cli(
        "eval-seeds",
        overlay,
        "--data",
        root,
        "--cams",
        cams,
        "--out-metrics",
        out / "seed.json",
        "--out-curve",
        out / "curve.csv",
    )
