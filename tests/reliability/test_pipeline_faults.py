"""Faults of a whole pipeline run: a second run in the same working copy, SIGKILL in the middle of every long
stage, and determinism (an uninterrupted run and an interrupted-and-resumed run give the same results file)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, DEMO, scratch_repo, snakemake, snakemake_jobs, tool_env

pytestmark = pytest.mark.workflow
RUN = [str(BIN / "snakemake"), "--cores", "2", *DEMO, "--rerun-incomplete"]


def start(repo: Path) -> subprocess.Popen:
    return subprocess.Popen(
        RUN,
        cwd=repo,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}:\n{proc.stdout.read()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def any_file(pattern_dir: Path, glob: str) -> bool:
    return pattern_dir.is_dir() and any(pattern_dir.glob(glob))


def test_a_second_run_is_refused_and_the_first_finishes_identically(demo_run, tmp_path):
    reference, _ = demo_run
    repo = scratch_repo(tmp_path / "repo")
    first = start(repo)
    wait_for(lambda: (repo / "logs/runs/0/train_cam.log").exists(), first, HANG_GUARD_S, "train_cam to start")
    second = snakemake(repo, "--cores", "1", *DEMO, check=False)
    # Refused before touching anything: by the lock, or (the check Snakemake makes first) because the running job's
    # outputs are marked incomplete.
    assert second.returncode != 0
    assert "cannot be locked" in second.stdout + second.stderr or "Incomplete files" in second.stdout + second.stderr
    out, _ = first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == 0, out[-4000:]
    # Determinism: two independent runs with the same seed give the same table, byte for byte.
    assert (repo / "results/voc_miou.csv").read_bytes() == (reference / "results/voc_miou.csv").read_bytes()


# Where to kill each long stage: once it has left resumable work behind.
KILL_POINTS = [
    ("train_cam", lambda r: any_file(r / "work/runs/0/cam/state", "state_*.pt")),
    ("infer_cam", lambda r: any_file(r / "work/runs/0/cam/cams.partial", "*.npz")),
    ("affinity_labels", lambda r: any_file(r / "work/runs/0/affinity/labels.partial/la", "*.png")),
    ("train_affinity", lambda r: any_file(r / "work/runs/0/affinity/state", "*.pt")),
    ("random_walk", lambda r: any_file(r / "work/runs/0/masks/random_walk.partial", "*.png")),
    # mmengine writes last_checkpoint after the checkpoint itself: from then on a restart has something to resume.
    ("train_seg", lambda r: (r / "work/runs/0/seg/runner/last_checkpoint").is_file()),
]


def test_sigkill_in_every_long_stage_then_rerun_gives_the_same_results(demo_run, tmp_path):
    reference, _ = demo_run
    repo = scratch_repo(tmp_path / "repo")
    killed = []
    for stage, ready in KILL_POINTS:
        run = start(repo)
        try:
            wait_for(lambda ready=ready: ready(repo), run, 900, f"{stage} to leave resumable work")
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        killed.append(stage)
        snakemake(repo, "--unlock", *DEMO)
    final = snakemake(repo, "--cores", "2", *DEMO, "--rerun-incomplete", timeout=HANG_GUARD_S)
    assert killed == [s for s, _ in KILL_POINTS]
    # Nothing half-written survives: the partial folders were completed and renamed.
    assert not list(repo.glob("work/**/*.partial"))
    assert snakemake_jobs(final.stdout + final.stderr)  # the resumed jobs ran
    resumed, uninterrupted = read_rows(repo), read_rows(reference)
    # Every stage resumes exactly: CAM training, inference, CRF, affinity training, the random walk and the
    # segmentation training (mmengine's resume plus ppcseg.segment.hooks.ReseedEachIteration) give identical rows.
    assert resumed == uninterrupted
    # mmengine logs "Auto resumed from the latest checkpoint None." when it finds nothing; this line only on a resume.
    assert "resumed epoch: 0, iter: " in (repo / "logs/runs/0/train_seg.log").read_text()


def read_rows(repo: Path) -> dict[str, str]:
    lines = (repo / "results/voc_miou.csv").read_text().splitlines()[1:]
    return {line.split(",")[0]: line for line in lines}
