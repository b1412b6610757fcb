"""Every use of a Snakemake or DVC internal, and the versions they were tested with, in one place.

The workflow otherwise uses only what Snakemake documents (rules, `rules.<name>.output`, `config`, `expand`, input
functions, `min_version`). What it needs beyond that, each caught by tests/workflow/test_internals.py when it changes:

- `workflow.overwrite_configfiles` (the `--configfile` overlays, in order): the stages read the same files as the
  Snakefile, so the command of every job names them (`overlay_files`).
- `workflow.dag_settings.forcerun` / `.forceall` (filled in before input functions run): a per-image folder that lost
  files is refused unless the user forces its rule (`forced_rules`).
- `rules.has(name)` (the rule namespace raises on an unknown name): the per-image stages that have a rule are sharded
  (`has_rule`).
- `SnakemakeApi(...).workflow(...)._workflow`, `Workflow._prepare_dag`, `Workflow._build_dag`, `workflow.dag.jobs` and
  a job's `rule.name`, `wildcards_dict`, `params`, `input`, `output`, `shellcmd`: `ppcseg export-dvc` turns the jobs
  into DVC stages; the public API runs or prints a DAG but does not list its jobs (`dag_jobs`).

DVC is used through its command line only (`dvc repro`, `dvc status`, `dvc push`/`pull`), and through the file format
of `dvc.yaml`, which `export-dvc` writes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# The Snakemake and DVC releases the test suite ran with (pyproject.toml lists the same ranges); the Snakefile refuses
# a Snakemake outside them, since the internals above may differ.
SNAKEMAKE_RANGE = ("9.27", "9.28")
DVC_RANGE = ("3.67", "3.68")


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string; a suffix such as `.dev0` or `rc1` is ignored."""
    numbers = []
    for part in version.split(".")[:3]:
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match[0]))
    return tuple(numbers)


def untested_version(tool: str, version: str, tested: tuple[str, str]) -> str | None:
    """A one-line refusal when `version` lies outside [tested[0], tested[1]), else None."""
    low, high = tested
    if _release(low) <= _release(version) < _release(high):
        return None
    return (
        f"{tool} {version} is not a tested release (>={low},<{high}, as pyproject.toml pins it): "
        f"install the tested one with `bash envs/setup.sh`"
    )


def overlay_files(workflow: Any) -> list[str]:
    """The `--configfile` overlays, in the order Snakemake merged them."""
    return [str(f) for f in workflow.overwrite_configfiles]


def has_rule(rules: Any, name: str) -> bool:
    """Whether the rules defined so far include `name`."""
    return bool(rules.has(name))


def forced_rules(workflow: Any) -> set[str] | None:
    """The rules `--forcerun` names, or None for `--forceall` (every rule); empty while the Snakefile is parsed."""
    settings = workflow.dag_settings
    if settings is None:
        return set()
    if settings.forceall:
        return None
    return {str(name) for name in settings.forcerun}


def dag_jobs(
    snakefile: Path, overlays: list[Path], config: dict[str, Any], resources: dict[str, dict[str, int]]
) -> tuple[list[str], list[Any]]:
    """(rule names in definition order, every job of the default target's DAG) as if everything had to run."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=64, overwrite_resources=resources),
            config_settings=ConfigSettings(configfiles=overlays, config=config),
            snakefile=snakefile,
            workdir=snakefile.parent,
        )
        workflow_api.dag(dag_settings=DAGSettings(forceall=True))
        workflow = workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        return [rule.name for rule in workflow.rules], list(workflow.dag.jobs)
