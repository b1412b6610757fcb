"""Snakemake no-op re-run time and `dvc status` time on the full demo DAG (targets: under 3 s and under 2 s).

    python benchmarks/bench_workflow.py                  # runs the demo once in a scratch copy, then times
    python benchmarks/bench_workflow.py --repo DIR       # time an existing, completed demo checkout

Baseline in the same run: `python -c pass` (interpreter start) and `snakemake --version`, so the ratio shows what the
workflow itself costs beyond starting the tools.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
DEMO = ["--configfile", "config/demo.yaml"]


def timed(cmd: list[str], cwd: Path, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.monotonic()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.monotonic() - start)
    return statistics.median(times)


def prepare(dest: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.workflow.helpers import run, scratch_repo

    repo = scratch_repo(dest)
    run([str(BIN / "ppcseg"), "export-dvc", "--params", "params.yaml", "--params", "config/demo.yaml"], repo)
    run([str(BIN / "dvc"), "repro"], repo, timeout=3000)
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="a completed demo checkout (dvc repro done)")
    args = parser.parse_args()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as scratch:
        repo = args.repo or prepare(Path(scratch) / "repo")
        python = timed([sys.executable, "-c", "pass"], repo)
        version = timed([str(BIN / "snakemake"), "--version"], repo)
        noop = timed([str(BIN / "snakemake"), "--cores", "1", *DEMO], repo)
        status = timed([str(BIN / "dvc"), "status"], repo)
    print(f"hardware: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"python -c pass:                 {python:6.2f} s")
    print(f"snakemake --version:            {version:6.2f} s")
    print(f"snakemake no-op re-run (demo):  {noop:6.2f} s  ({noop / version:.1f}x snakemake --version; target < 3 s)")
    print(f"dvc status (demo DAG):          {status:6.2f} s  (target < 2 s)")


if __name__ == "__main__":
    main()
