"""collect-results: one row per stage and run, and with several runs the median, min and max rows of each stage."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ppcseg.data.voc import CLASSES
from ppcseg.evaluation.results import CSV_COLUMNS, table_rows
from ppcseg.utils.errors import InputError
from tests.timing import HANG_GUARD_S

STAGES = [("seed", "train"), ("mask", "train")]


def row(stage: str, split: str, miou: float, background: float | None, settings: dict | None = None) -> dict:
    iou = {name: None for name in CLASSES} | {"background": background, "cat": 50.0}
    return {
        "stage": stage,
        "split": split,
        "iou": iou,
        "mIoU": miou,
        "n_images": 4,
        "settings": settings or {"bg_threshold": 0.26},
    }


def by_run(table: list[dict], stage: str) -> dict:
    return {r["run"]: r for r in table if r["stage"] == stage}


def test_one_run_gives_one_row_per_stage_and_no_summary():
    table = table_rows({0: [row("seed", "train", 30.0, 70.0), row("mask", "train", 40.0, 80.0)]})
    assert [(r["stage"], r["run"]) for r in table] == [("seed", 0), ("mask", 0)]


def test_median_min_max_are_taken_per_column():
    # Three runs: per column the median is the middle value, independently of the other columns (the background's
    # median run is not the mIoU's median run).
    table = table_rows(
        {
            0: [row("seed", "train", 30.0, 90.0, {"bg_threshold": 0.26, "gt_tuned_mIoU": 35.0, "masks": "crf"})],
            1: [row("seed", "train", 20.0, 70.0, {"bg_threshold": 0.26, "gt_tuned_mIoU": 31.0, "masks": "crf"})],
            2: [row("seed", "train", 25.0, 95.0, {"bg_threshold": 0.26, "gt_tuned_mIoU": 40.0, "masks": "rw"})],
        }
    )
    assert [r["run"] for r in table] == [0, 1, 2, "median", "min", "max"]
    rows = by_run(table, "seed")
    assert (rows["median"]["mIoU"], rows["min"]["mIoU"], rows["max"]["mIoU"]) == (25.0, 20.0, 30.0)
    assert (rows["median"]["iou"]["background"], rows["min"]["iou"]["background"]) == (90.0, 70.0)
    assert rows["max"]["iou"]["background"] == 95.0 and rows["median"]["iou"]["cat"] == 50.0
    assert rows["median"]["iou"]["dog"] is None  # absent from every run: no value, as in the runs' rows
    # Settings equal in every run stay, differing numbers get the statistic, other differing values are left out.
    assert rows["median"]["settings"] == {"bg_threshold": 0.26, "gt_tuned_mIoU": 35.0}
    assert rows["max"]["settings"]["gt_tuned_mIoU"] == 40.0 and rows["median"]["n_images"] == 4


def test_median_of_an_even_count_is_the_mean_of_the_two_middle_values():
    table = table_rows({seed: [row("seed", "train", m, b)] for seed, m, b in [(0, 20.0, 60.0), (3, 31.0, 61.0)]})
    rows = by_run(table, "seed")
    assert rows["median"]["mIoU"] == 25.5 and rows["median"]["iou"]["background"] == 60.5
    four = table_rows({s: [row("seed", "train", m, None)] for s, m in enumerate([10.0, 40.0, 20.0, 30.005])})
    assert by_run(four, "seed")["median"]["mIoU"] == 25.0  # (20 + 30.005) / 2, rounded to two decimals as the rows


def test_a_class_absent_from_some_runs_is_summarised_over_the_others():
    table = table_rows({0: [row("seed", "train", 20.0, None)], 1: [row("seed", "train", 22.0, 64.0)]})
    assert by_run(table, "seed")["min"]["iou"]["background"] == 64.0


def test_runs_with_other_stages_are_refused():
    with pytest.raises(InputError, match=r"run 1: its metric rows are \[\('seed', 'train'\)\]"):
        table_rows(
            {0: [row("seed", "train", 1.0, 1.0), row("mask", "train", 1.0, 1.0)], 1: [row("seed", "train", 1.0, 1.0)]}
        )


def stage(tmp_path: Path, *run_args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ppcseg", "collect-results", "--params", "params.yaml", *run_args]
    cmd += ["--out", str(tmp_path / "voc_miou.csv"), "--out-metrics", str(tmp_path / "metrics.json")]
    return subprocess.run(
        cmd, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=HANG_GUARD_S
    )


def test_stage_writes_run_column_and_summary_rows(tmp_path):
    files = {}
    for seed, mious in [(0, (30.0, 40.0)), (1, (26.0, 44.0))]:
        for (name, split), miou in zip(STAGES, mious, strict=True):
            files.setdefault(seed, []).append(tmp_path / f"{name}_{seed}.json")
            files[seed][-1].write_text(json.dumps(row(name, split, miou, 80.0)))
    proc = stage(tmp_path, *(a for seed, paths in files.items() for a in ["--run", str(seed), *map(str, paths)]))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "voc_miou.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == CSV_COLUMNS and CSV_COLUMNS[:3] == ["stage", "run", "split"]
    assert [(r["stage"], r["run"], r["mIoU"]) for r in table] == [
        ("seed", "0", "30.00"),
        ("seed", "1", "26.00"),
        ("seed", "median", "28.00"),
        ("seed", "min", "26.00"),
        ("seed", "max", "30.00"),
        ("mask", "0", "40.00"),
        ("mask", "1", "44.00"),
        ("mask", "median", "42.00"),
        ("mask", "min", "40.00"),
        ("mask", "max", "44.00"),
    ]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["seed/train/median"]["mIoU"] == 28.0 and metrics["mask/train/1"]["mIoU"] == 44.0


@pytest.mark.parametrize(
    "run_args,message",
    [
        (["--run", "x", "a.json"], "--run x: give a run's seed (a non-negative integer in ASCII digits 0-9), then its"),
        (["--run", "0"], "--run 0: give a run's seed"),
        (["--run", "0", "a.json", "--run", "0", "a.json"], "--run 0: run given twice"),
    ],
)
def test_bad_run_arguments_are_refused(tmp_path, run_args, message):
    proc = stage(tmp_path, *run_args)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "voc_miou.csv").exists()


# Damaged or inconsistent rows: one line naming the file or run, exit 2, nothing written (#30 item 3).


def write_runs(tmp_path: Path, rows: dict[int, dict | list | str | bytes]) -> list[str]:
    """--run flags of one-stage runs whose row files hold `rows` (JSON of a dict or list; str and bytes as they are)."""
    args = []
    for seed, content in rows.items():
        path = tmp_path / f"seed_{seed}.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        args += ["--run", str(seed), str(path)]
    return args


def assert_refused(tmp_path: Path, proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "voc_miou.csv").exists() and not (tmp_path / "metrics.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left"


GOOD = row("seed", "train", 30.0, 70.0)


@pytest.mark.parametrize(
    "damaged,needles",
    [
        (json.dumps(GOOD)[:60], ["seed_1.json", "not a metrics row", "JSON"]),
        ("", ["seed_1.json", "not a metrics row"]),
        (b"\xff\xfe{", ["seed_1.json", "not a metrics row (not UTF-8"]),
        ({k: v for k, v in GOOD.items() if k != "iou"}, ["seed_1.json", "'iou' is missing"]),
        ({**GOOD, "iou": {"background": 70.0}}, ["seed_1.json", "iou: class 'aeroplane' is missing"]),
        ({**GOOD, "mIoU": "30"}, ["seed_1.json", "mIoU: '30' is not a number"]),
        ({**GOOD, "n_images": 0}, ["seed_1.json", "n_images: 0 is not a positive integer"]),
        ({**GOOD, "n_images": True}, ["seed_1.json", "n_images: True is not a positive integer"]),
        ([GOOD], ["seed_1.json", "not a metrics row: it holds a list, not a JSON object"]),
    ],
    ids=[
        "truncated",
        "empty",
        "not-utf8",
        "no-iou",
        "classes-missing",
        "miou-string",
        "no-images",
        "bool-count",
        "list",
    ],
)
def test_damaged_row_is_refused_naming_the_file(tmp_path, damaged, needles):
    assert_refused(tmp_path, stage(tmp_path, *write_runs(tmp_path, {0: GOOD, 1: damaged})), *needles)


@pytest.mark.parametrize("where", ["mIoU", "iou"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_miou_or_iou_is_refused(tmp_path, where, value):
    """Python's json reads NaN and Infinity; the median row came out `nan` while min and max skipped the run."""
    text = json.dumps(GOOD).replace('"mIoU": 30.0', f'"mIoU": {value}')
    if where == "iou":
        text = json.dumps(GOOD).replace('"cat": 50.0', f'"cat": {value}')
    key = "mIoU" if where == "mIoU" else "iou.cat"
    proc = stage(tmp_path, *write_runs(tmp_path, {0: GOOD, 1: text, 2: GOOD}))
    assert_refused(tmp_path, proc, "seed_1.json", f"{key}: {value.lower().replace('infinity', 'inf')} is not finite")


def test_runs_evaluated_on_different_image_counts_are_refused(tmp_path):
    rows = {0: {**GOOD, "n_images": 40}, 1: {**GOOD, "n_images": 20}}
    proc = stage(tmp_path, *write_runs(tmp_path, rows))
    assert_refused(tmp_path, proc, "run 1", "20 images", "run 0", "40", "seed/train")


@pytest.mark.parametrize("seed", ["٣", "３", "²", "1\u0660"], ids=["arabic-indic", "fullwidth", "superscript", "mixed"])
def test_run_seed_in_non_ascii_digits_is_refused(tmp_path, seed):
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(GOOD))
    proc = stage(tmp_path, "--run", seed, str(path))
    assert_refused(tmp_path, proc, f"--run {seed}: give a run's seed (a non-negative integer in ASCII digits 0-9)")


def test_experiments_get_a_column_and_their_own_summaries(tmp_path):
    args = []
    for experiment, mious in [("seam", (30.0, 26.0)), ("seam_ppc", (40.0, 36.0))]:
        for seed, miou in enumerate(mious):
            path = tmp_path / f"{experiment}_{seed}.json"
            path.write_text(json.dumps(row("seed", "train", miou, 80.0)))
            args += ["--experiment-run", experiment, str(seed), str(path)]
    proc = stage(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "voc_miou.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["experiment", *CSV_COLUMNS]
    assert [(r["experiment"], r["run"], r["mIoU"]) for r in table] == [
        ("seam", "0", "30.00"),
        ("seam", "1", "26.00"),
        ("seam", "median", "28.00"),
        ("seam", "min", "26.00"),
        ("seam", "max", "30.00"),
        ("seam_ppc", "0", "40.00"),
        ("seam_ppc", "1", "36.00"),
        ("seam_ppc", "median", "38.00"),
        ("seam_ppc", "min", "36.00"),
        ("seam_ppc", "max", "40.00"),
    ]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["seam_ppc/seed/train/median"]["mIoU"] == 38.0
    mixed = stage(tmp_path, "--run", "0", str(tmp_path / "seam_0.json"), *args[:4])
    assert mixed.returncode == 2 and "not allowed with argument" in mixed.stderr
