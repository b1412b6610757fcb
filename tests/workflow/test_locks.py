"""One tool at a time in a working copy (src/ppcseg/workflow/locks.py): a stage started by DVC refuses while a real
Snakemake run holds the working copy, and Snakemake refuses while DVC holds its repository lock."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import zc.lockfile

from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, DEMO, planning_copy, snakemake, tool_env

pytestmark = pytest.mark.workflow

SLOW_SNAKEFILE = """
rule wait:
    output: "waited.txt"
    shell: "while [ ! -e release ]; do sleep 0.1; done; touch {output}"
"""


def test_a_stage_run_by_dvc_refuses_while_snakemake_holds_the_working_copy(tmp_path):
    (tmp_path / "Snakefile").write_text(SLOW_SNAKEFILE)
    running = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "1"], cwd=tmp_path, env=tool_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while not list((tmp_path / ".snakemake" / "locks").glob("*.lock")):
            assert running.poll() is None and time.monotonic() < deadline, "snakemake did not start"
            time.sleep(0.2)
        env = dict(tool_env(), DVC_STAGE="collect_results", DVC_ROOT=str(tmp_path))
        rows = tmp_path / "seed.json"
        cmd = [str(BIN / "ppcseg"), "collect-results", "--params", str(Path.cwd() / "params.yaml")]
        proc = subprocess.run(
            [*cmd, "--run", "0", str(rows), "--out", str(tmp_path / "t.csv"), "--out-metrics", str(tmp_path / "m.json")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S,
        )  # fmt: skip
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "a Snakemake run holds this working copy" in lines[0], proc.stderr
        assert ".snakemake/locks/" in lines[0]
        assert not (tmp_path / "t.csv").exists()
    finally:
        (tmp_path / "release").touch()
        running.wait(timeout=HANG_GUARD_S)
    assert (tmp_path / "waited.txt").is_file()  # the Snakemake run finished unharmed


def test_snakemake_refuses_while_dvc_holds_the_working_copy():
    repo = planning_copy()
    (repo / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    held = zc.lockfile.LockFile(str(repo / ".dvc" / "tmp" / "lock"))  # as DVC takes it for a whole `dvc repro`
    try:
        proc = snakemake(repo, "-n", *DEMO, check=False)
    finally:
        held.close()
    assert proc.returncode != 0
    assert ".dvc/tmp/lock: a DVC command holds this working copy" in proc.stdout + proc.stderr
    snakemake(repo, "-n", *DEMO)  # and plans again once DVC let go
