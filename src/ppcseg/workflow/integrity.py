"""What the Snakefile checks before Snakemake plans the jobs, so that re-runs redo what changed (README, reliability).

Snakemake decides from modification times and the params it recorded, which misses:

- an edit inside the dataset folder (the rules see the folder, whose timestamp does not change): the stages also take
  the dataset's manifest as an input (`ppcseg.data.manifest`), which the Snakefile refreshes first.
- a missing intermediate output whose consumers' outputs exist (a stage failed or was stopped, and Snakemake removed
  its outputs but kept the record of its new params; or a user deleted it): Snakemake does not rebuild it. Each rule
  takes a rebuild flag file as an input; bumping a consumer's flag makes it re-run, which requests the missing file.
- a per-image output folder with files deleted: the flag of the stage that writes it is bumped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from ppcseg.utils.io import write_text

REBUILD_DIR = Path(".snakemake") / "ppcseg-rebuild"


def rebuild_flag(rule: str, run: str | None = None) -> str:
    """The flag file a rule takes as an input; `request_rebuild` bumps it. A rule that branches per run has one flag
    per run (`run` is "{run}" in the rule, a seed here), so that rebuilding one run leaves the others alone."""
    return str(REBUILD_DIR / rule if run is None else REBUILD_DIR / "runs" / run / rule)


def ensure_flags(flags: Iterable[str]) -> None:
    """Create missing flags, dated at the epoch so that a new flag never makes a job look out of date."""
    for name in flags:
        flag = Path(name)
        if not flag.is_file():
            write_text(flag, "")
            os.utime(flag, ns=(0, 0))


def request_rebuild(flag: str, reason: str) -> None:
    """Make Snakemake re-run the job that takes `flag`: a newer flag with new content (Snakemake also compares small
    files' checksums)."""
    write_text(flag, f"{time.time_ns()} {reason}\n")
