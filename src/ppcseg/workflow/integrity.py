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


def rebuild_flag(rule: str) -> str:
    """The flag file a rule takes as an input; `request_rebuild` bumps it."""
    return str(REBUILD_DIR / rule)


def ensure_flags(rules: Iterable[str]) -> None:
    """Create missing flags, dated at the epoch so that a new flag never makes a job look out of date."""
    for rule in rules:
        flag = Path(rebuild_flag(rule))
        if not flag.is_file():
            write_text(flag, "")
            os.utime(flag, ns=(0, 0))


def request_rebuild(rule: str, reason: str) -> None:
    """Make Snakemake re-run `rule`: a newer flag with new content (Snakemake also compares small files' checksums)."""
    write_text(rebuild_flag(rule), f"{time.time_ns()} {reason}\n")
