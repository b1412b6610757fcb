"""Snakemake no-op re-run time and `dvc status` time on the full demo DAG (targets: under 3 s and under 2 s).

    python benchmarks/bench_workflow.py                  # runs the demo once in a scratch copy, then times
    python benchmarks/bench_workflow.py --repo DIR       # time an existing, completed demo checkout
    python benchmarks/bench_workflow.py --repo DIR --sync    # ... after recording its outputs in DVC first
    python benchmarks/bench_workflow.py --profile        # also: where the no-op re-run spends its time (cProfile)

The demo runs through Snakemake; `dvc commit` then records every stage's outputs in dvc.lock without recomputing, and
`snakemake --touch` puts the modification times back in DAG order (DVC's cache links give its outputs new ones), so
that both tools have nothing to do. Each timing is the median of --repeat runs, and the script checks that the
runs really were no-ops. Baselines in the same run: `python -c pass` (interpreter start), `snakemake --version` and
`dvc --version` (each tool's own start-up), so the ratios show what the workflow itself costs beyond starting the tools.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hardware import hardware

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
DEMO = ["--configfile", "config/demo.yaml"]

SNAKEMAKE = [str(BIN / "snakemake"), "--cores", "1", *DEMO]


def timed(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
        times.append(time.monotonic() - start)
        out = proc.stdout + proc.stderr
    return statistics.median(times), out


def sync(repo: Path) -> None:
    """Record the finished Snakemake run in dvc.lock, then restore Snakemake's view of modification times."""
    subprocess.run([str(BIN / "dvc"), "commit", "--force", "--quiet"], cwd=repo, check=True)
    subprocess.run([*SNAKEMAKE, "--touch"], cwd=repo, check=True, capture_output=True)


def prepare(dest: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.workflow.helpers import run, scratch_repo

    repo = scratch_repo(dest)
    run([str(BIN / "ppcseg"), "export-dvc", "--params", "params.yaml", "--params", "config/demo.yaml"], repo)
    run([str(BIN / "snakemake"), "--cores", str(min(os.cpu_count() or 1, 2)), *DEMO], repo, timeout=3000)
    sync(repo)
    return repo


def profile_noop(repo: Path, top: int = 25) -> str:
    """cProfile of one no-op Snakemake run in this process (the CLI entry point, as `snakemake` runs it)."""
    from snakemake.cli import main as snakemake_main

    argv, cwd = sys.argv, os.getcwd()
    profiler = cProfile.Profile()
    try:
        os.chdir(repo)
        sys.argv = ["snakemake", *SNAKEMAKE[1:], "--quiet", "all"]
        profiler.enable()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                snakemake_main()
        except SystemExit:
            pass
        profiler.disable()
    finally:
        sys.argv = argv
        os.chdir(cwd)
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(top)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="a completed demo checkout")
    parser.add_argument("--sync", action="store_true", help="with --repo: dvc commit + snakemake --touch first")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the Snakemake no-op re-run")
    args = parser.parse_args()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as scratch:
        repo = args.repo.resolve() if args.repo else prepare(Path(scratch) / "repo")
        if args.repo and args.sync:
            sync(repo)
        python, _ = timed([sys.executable, "-c", "pass"], repo, args.repeat)
        smk_version, _ = timed([str(BIN / "snakemake"), "--version"], repo, args.repeat)
        dvc_version, _ = timed([str(BIN / "dvc"), "--version"], repo, args.repeat)
        noop, noop_out = timed(SNAKEMAKE, repo, args.repeat)
        status, status_out = timed([str(BIN / "dvc"), "status"], repo, args.repeat)
        jobs = sum(1 for line in noop_out.splitlines() if line.startswith(("rule ", "localrule ")))
        dry = subprocess.run([*SNAKEMAKE, "-n", "--forceall"], cwd=repo, capture_output=True, text=True, check=True)
        dag_jobs = dry.stdout.split("Job stats:")[1].split("total")[1].split()[0] if "Job stats:" in dry.stdout else "?"
        profile = profile_noop(repo) if args.profile else ""
    print(f"hardware: {hardware()}")
    print(f"repo: {repo if args.repo else 'scratch copy, demo run by Snakemake, recorded by dvc commit'}")
    print(f"median of {args.repeat} runs each; demo DAG: {dag_jobs} jobs")
    print(f"python -c pass:                 {python:6.2f} s")
    print(f"snakemake --version:            {smk_version:6.2f} s")
    print(f"dvc --version:                  {dvc_version:6.2f} s")
    print(
        f"snakemake no-op re-run (demo):  {noop:6.2f} s  ({noop / smk_version:.1f}x snakemake --version; target < 3 s)"
    )
    print(f"dvc status (demo DAG):          {status:6.2f} s  ({status / dvc_version:.1f}x dvc --version; target < 2 s)")
    if "Nothing to be done" not in noop_out or jobs:
        print(f"WARNING: the Snakemake re-run was not a no-op ({jobs} jobs ran): the timing is not the no-op's")
    if "up to date" not in status_out:
        print(f"WARNING: dvc status found changes, so it also hashed them:\n{status_out.strip()[:2000]}")
    if profile:
        print("\ncProfile of one no-op re-run (cumulative):\n" + profile)


if __name__ == "__main__":
    main()
