"""Several independent runs (params `runs`): the DAG branches per run from train_cam on, data and pretraining shared;
the results table gets per-run rows and, with two or more runs, median / min / max rows per stage."""

from __future__ import annotations

import csv
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ppcseg.data.voc import CLASSES
from tests.workflow.helpers import DEMO, scratch_repo, snakemake

pytestmark = pytest.mark.workflow
SHARED = {"make_synthetic_voc", "pretrain_backbone", "collect_results", "report"}
PER_RUN = {"train_cam", "infer_cam", "eval_seeds", "affinity_labels", "train_affinity", "random_walk", "eval_masks"}
PER_RUN |= {"train_seg", "eval_seg"}


def planned_jobs(repo: Path, *overlays: str, forceall: bool = False) -> list[tuple[str, str | None]]:
    """(rule, run wildcard or None) of every job `snakemake -n` lists for the demo with these overlays (one
    --configfile: a second one would replace the first), read from its "rule NAME:" blocks."""
    out = snakemake(repo, "-n", *(["--forceall"] if forceall else []), *DEMO, *overlays).stdout
    jobs: list[tuple[str, str | None]] = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", out):
        head = re.match(r"(?:local)?rule (\S+):\n", block)
        if head and head.group(1) != "all":  # the default target's rule, which runs nothing
            run = re.search(r"^    wildcards: .*\brun=(\d+)", block, re.M)
            jobs.append((head.group(1), run.group(1) if run else None))
    return jobs


def runs_overlay(repo: Path, runs: list[int], name: str = "runs.yaml") -> str:
    (repo / name).write_text(yaml.safe_dump({"runs": runs}))
    return name


def test_two_runs_double_the_per_run_jobs_and_share_the_rest(tmp_path):
    repo = scratch_repo(tmp_path / "repo")
    one = Counter(planned_jobs(repo, forceall=True))
    two = Counter(planned_jobs(repo, runs_overlay(repo, [0, 3]), forceall=True))
    assert {rule for rule, _ in one} == SHARED | PER_RUN
    assert all(count == 1 for (rule, _), count in one.items() if rule != "eval_seg")
    for rule in SHARED:
        assert two[(rule, None)] == 1, rule  # data, pretraining, the table and the report: once
    for rule in PER_RUN:
        protocols = 2 if rule == "eval_seg" else 1  # single scale and MS + flip + CRF
        assert (one[(rule, "0")], two[(rule, "0")], two[(rule, "3")]) == (protocols,) * 3, rule
        assert (rule, None) not in two
    assert sum(two.values()) == sum(one.values()) + sum(one[(rule, "0")] for rule in PER_RUN)


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def numbers(row: dict[str, str]) -> list[str]:
    return [row[c] for c in [*CLASSES, "mIoU", "n_images", "settings"]]


@pytest.mark.slow
def test_two_runs_match_single_runs_and_adding_a_run_keeps_the_first(demo_run, tmp_path):
    """The finished demo (`runs: [0]`) plus run 1: only run 1's jobs and the table and report are planned; then the
    table has per-run rows equal to the single-run demos with seed 0 (the session's demo) and seed 1, and the median,
    min and max of each stage's two runs."""
    done, _ = demo_run
    repo = tmp_path / "two"
    shutil.copytree(done, repo, symlinks=True)  # modification times kept: Snakemake sees the finished run
    overlay = runs_overlay(repo, [0, 1])
    planned = planned_jobs(repo, overlay)
    assert {run for rule, run in planned if rule in PER_RUN} == {"1"}, planned
    assert {rule for rule, run in planned if run is None} == {"collect_results", "report"}, planned
    start = time.monotonic()
    snakemake(repo, "--cores", "2", *DEMO, overlay)
    print(f"run 1 added to the demo: {time.monotonic() - start:.0f} s")

    single = scratch_repo(tmp_path / "seed1")
    snakemake(single, "--cores", "2", *DEMO, runs_overlay(single, [1]))

    table = read_table(repo / "results/voc_miou.csv")
    seed0 = {row["stage"]: row for row in read_table(done / "results/voc_miou.csv")}
    seed1 = {row["stage"]: row for row in read_table(single / "results/voc_miou.csv")}
    stages = list(seed0)
    assert [(row["stage"], row["run"]) for row in table] == [
        (stage, run) for stage in stages for run in ["0", "1", "median", "min", "max"]
    ]
    for row in table:
        if row["run"] in ("0", "1"):
            expected = (seed0 if row["run"] == "0" else seed1)[row["stage"]]
            assert numbers(row) == numbers(expected), (row["stage"], row["run"])
    for stage in stages:
        rows = {row["run"]: row for row in table if row["stage"] == stage}
        for column in [*CLASSES, "mIoU"]:
            values = [float(rows[run][column]) for run in ("0", "1") if rows[run][column]]
            if not values:
                continue
            assert float(rows["min"][column]) == min(values) and float(rows["max"][column]) == max(values)
            # two runs: the median is their mean (rounded to two decimals like every value)
            assert float(rows["median"][column]) == pytest.approx(sum(values) / len(values), abs=0.0051)
    assert "id='spread'" in (repo / "results/report.html").read_text()
    assert (repo / "results/runs/1/train_cam_loss.csv").is_file() and (repo / "work/runs/1/cam/cams").is_dir()
