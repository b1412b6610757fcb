"""What the Snakefile checks before Snakemake plans the jobs, so that re-runs redo what changed (README, reliability).

Snakemake decides from modification times and the params it recorded, which misses:

- an edit inside the dataset folder (the rules see the folder, whose timestamp does not change): the stages also take
  the dataset's manifest as an input (`ppcseg.data.manifest`), which the Snakefile refreshes first.
- a missing intermediate output whose consumers' outputs exist (a stage failed or was stopped, and Snakemake removed
  its outputs but kept the record of its new params; or a user deleted it): Snakemake does not rebuild it. Each rule
  takes a rebuild flag file as an input; bumping a consumer's flag makes it re-run, which requests the missing file.
- a per-image output folder with files deleted: the flag of the stage that writes it is bumped.
- a change of `execution.shards` (K): the finished folder of a per-image stage is then written by another rule (the
  stage with K = 1, its merge with K > 1) with another command and the shard folders as extra inputs, which Snakemake's
  code and input triggers would take for a change of results. `adopt_record` rewrites the folder's record to the new
  rule, command and shard inputs; the recorded params stay, so a params change still re-runs it.
"""

from __future__ import annotations

import json
import os
import time
from base64 import urlsafe_b64encode
from collections.abc import Iterable
from pathlib import Path

from ppcseg.utils.io import write_json, write_text

REBUILD_DIR = Path(".snakemake") / "ppcseg-rebuild"
# Snakemake's per-file job records (its default `file` persistence backend).
METADATA_DIR = Path(".snakemake") / "metadata"


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


def _record_path(output: str) -> Path:
    """Where Snakemake keeps the record of `output`: its path in URL-safe base64, split into 254-character folders."""
    encoded = urlsafe_b64encode(output.encode()).decode()
    parts = [encoded[i : i + 254] for i in range(0, len(encoded), 254)]
    return METADATA_DIR.joinpath(*["@" + part for part in parts[:-1]], parts[-1])


def adopt_record(
    output: str, family: Iterable[str], rule: str, code: str, shard_prefix: str, shards: list[str]
) -> bool:
    """Make the record of a finished per-image folder look written by `rule` (command `code`) with the shard folders
    `shards` (inputs named `shard_prefix`* are replaced) when a rule of its `family` (the stage and its merge) wrote it
    under another K.

    True when the record was rewritten. A folder without a record, or written by a rule outside the family, is left
    as it is (Snakemake decides about it as usual).
    """
    path = _record_path(output)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if record.get("rule") not in set(family) or not isinstance(record.get("input"), list):
        return False
    inputs = sorted([f for f in record["input"] if not f.startswith(shard_prefix)] + shards)
    adopted = {**record, "rule": rule, "code": code, "input": inputs}
    if adopted == record:
        return False
    write_json(path, adopted)
    return True
