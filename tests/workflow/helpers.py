"""Helpers for tests that run the real tools (Snakemake, DVC, Slurm) in a scratch copy of the repository."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.timing import HANG_GUARD_S

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO = ["--configfile", "config/demo.yaml"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "ppcseg tests",
    "GIT_AUTHOR_EMAIL": "tests@ppcseg.invalid",
    "GIT_COMMITTER_NAME": "ppcseg tests",
    "GIT_COMMITTER_EMAIL": "tests@ppcseg.invalid",
}


def tool_env() -> dict[str, str]:
    env = dict(os.environ, **GIT_ENV)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run(cmd: list[str], cwd: Path, timeout: float = HANG_GUARD_S, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; on an unexpected exit code, fail with its output (and the tail of any job logs)."""
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        logs = ""
        for log in sorted((cwd / "logs").glob("**/*.log")) if (cwd / "logs").is_dir() else []:
            logs += f"\n--- {log.name} ---\n" + log.read_text()[-3000:]
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-5000:]}\n"
            f"--- stderr ---\n{proc.stderr[-8000:]}{logs}"
        )
    return proc


def scratch_repo(dest: Path) -> Path:
    """Copy the repository's tracked and untracked-but-not-ignored files to `dest` and commit them there, leaving out
    what a run of the checkout wrote to `results/` (kept out of .gitignore for users to commit): a demo run before the
    tests must not make a scratch copy look finished."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    tracked = set(
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split(
            "\0"
        )
    )
    for name in filter(None, files):
        if name.startswith("results/") and name not in tracked:
            continue
        src = REPO / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "scratch copy"], dest)
    return dest


def snakemake(cwd: Path, *args: str, timeout: float = HANG_GUARD_S, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), *args], cwd, timeout=timeout, check=check)


def snakemake_jobs(output: str) -> list[dict[str, str]]:
    """The jobs Snakemake lists in its output, a dry run's or a real run's: one dict per "rule NAME:" (or localrule,
    checkpoint) block, {"rule": NAME} plus the block's indented "field: value" lines (output, wildcards, resources...).
    Tests read rule names from here, never by searching the raw text, where they also match file names."""
    jobs: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in output.splitlines():
        head = line.split()
        if len(head) == 2 and head[0] in ("rule", "localrule", "checkpoint") and head[1].endswith(":"):
            current = {"rule": head[1][:-1]}
            jobs.append(current)
        elif current is not None and line.startswith("    ") and ": " in line:
            field, value = line.strip().split(": ", 1)
            current.setdefault(field, value)
        else:
            current = None
    return jobs


def planned_rules(repo: Path, *args: str) -> set[str]:
    """The rules of the jobs `snakemake -n *args` would run in `repo` (empty when nothing is to be done; the default
    target's rule `all`, which runs nothing, left out)."""
    return {job["rule"] for job in snakemake_jobs(snakemake(repo, "-n", *args).stdout)} - {"all"}


@functools.cache
def planning_copy() -> Path:
    """A scratch copy of the repository for dry runs, so that tests never plan in the developer's checkout."""
    dest = Path(tempfile.mkdtemp(prefix="ppcseg-plan-"))
    atexit.register(shutil.rmtree, dest, ignore_errors=True)
    return scratch_repo(dest)


def dry_run_rules(*configfiles: str, repo: Path | None = None, forceall: bool = True) -> set[str]:
    """The rules of the jobs of the default target with these params overlays (all of the DAG with forceall), planned
    in `repo` or in a scratch copy of the repository."""
    return planned_rules(repo or planning_copy(), *(["--forceall"] if forceall else []), "--configfile", *configfiles)


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start
