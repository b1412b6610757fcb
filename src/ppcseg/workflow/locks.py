"""One working copy, one tool at a time: Snakemake and DVC each lock the working copy their own way, and neither sees
the other's lock, so `dvc repro` beside a running `snakemake` would regenerate the files its jobs are reading.

- A stage started by DVC (`DVC_STAGE` set) refuses to run while Snakemake holds the working copy: Snakemake keeps
  lock files under `.snakemake/locks/` for as long as a run goes on (and after a crash, until `snakemake --unlock`).
- The Snakefile refuses to plan a run while a DVC command holds `.dvc/tmp/lock` (DVC's repository lock, taken with
  flock for the whole `dvc repro`); testing it takes and drops a shared flock and writes nothing.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"
DVC_LOCK = Path(".dvc") / "tmp" / "lock"


def snakemake_lock(root: str | Path) -> Path | None:
    """A lock file of a Snakemake run holding the working copy at `root`, or None."""
    folder = Path(root) / SNAKEMAKE_LOCKS
    try:
        return next((folder / name for name in sorted(os.listdir(folder)) if name.endswith(".lock")), None)
    except OSError:
        return None


def dvc_holds(root: str | Path) -> bool:
    """Whether a DVC command holds the repository lock of the working copy at `root`."""
    try:
        handle = open(Path(root) / DVC_LOCK)  # noqa: SIM115 -- closed below, whatever flock says
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        handle.close()
    return False
