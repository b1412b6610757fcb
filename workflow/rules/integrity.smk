# Checks made before Snakemake plans the jobs, so that re-runs redo what changed (src/ppcseg/workflow/integrity.py):
# the dataset manifest follows edits inside the dataset, and a rule whose input was removed (a stopped or failed job,
# a deleted intermediate) or whose per-image output lost files is made to re-run through its rebuild flag.

import glob
import os
import re

from snakemake.logging import logger

from ppcseg.utils.per_image import PER_IMAGE_STAGES, missing_outputs, stage_outputs
from ppcseg.utils.errors import InputError
from ppcseg.data.manifest import manifest_path, refresh_manifest
from ppcseg.workflow.integrity import (
    adopt_record,
    ensure_flags,
    rebuild_flag,
    request_rebuild,
)

MANIFEST = str(manifest_path(ROOT))


def _existing(pattern):
    """The files of an output pattern that exist (wildcards matched by glob)."""
    if "{" not in pattern:
        return [pattern] if os.path.exists(pattern) else []
    return glob.glob(re.sub(r"\{[^}]*\}", "*", pattern))


# `{run}` in a pattern; outputs carry the wildcard's constraint (`{run,\d+}`), inputs do not.
RUN_WILDCARD = re.compile(r"\{run(,[^}]*)?\}")


def _jobs(rule):
    """(its rebuild flag, the files of a pattern with `{run}` filled in) for each run of a per-run rule, else once."""
    if not any(RUN_WILDCARD.search(str(f)) for f in rule.output):
        return [(rebuild_flag(rule.name), str)]
    return [
        (
            rebuild_flag(rule.name, run),
            lambda f, run=run: RUN_WILDCARD.sub(run, str(f)),
        )
        for run in RUNS
    ]


def check_integrity():
    """Refresh the manifest and bump the rebuild flag of every job whose outputs stand on missing inputs."""
    if not workflow.is_main_process:
        return
    if refresh_manifest(ROOT):
        logger.info(
            f"{MANIFEST}: the dataset changed; the stages that read it will re-run"
        )
    rules = [
        r for r in workflow.rules if r.output and not r.name.startswith("download_")
    ]
    ensure_flags(flag for r in rules for flag, _ in _jobs(r))
    producers = {
        fill(f): r.name for r in rules for _, fill in _jobs(r) for f in r.output
    }
    producers = {f: name for f, name in producers.items() if "{" not in f}
    for r in rules:
        for flag, fill in _jobs(r):
            if not any(_existing(fill(f)) for f in r.output):
                continue  # nothing built yet: Snakemake runs it when something needs it
            missing = [
                fill(f)
                for f in r.input
                if fill(f) in producers and not os.path.exists(fill(f))
            ]
            if missing:
                logger.info(
                    f"{r.name}: its input {missing[0]} is missing: rebuilding it and what depends on it"
                )
                request_rebuild(flag, f"missing input {missing[0]}")
    # Per-image folders, taken from the rules (workflow/rules/shards.smk: the stage's rule or its merge writes them).
    for rule_name in PER_IMAGE_STAGES:
        for run in RUNS:
            folder = stage_folder(rule_name).replace("{run}", run)
            if final_rule(rule_name) not in producers.values() or not os.path.isdir(
                folder
            ):
                continue
            try:
                lost = missing_outputs(folder, stage_outputs(rule_name, ROOT, config))
            except (
                InputError
            ):  # no dataset or a broken image list: the stages report it themselves
                continue
            if lost:
                logger.info(
                    f"{folder}: {len(lost)} file(s) missing, e.g. {lost[0]}: re-running {rule_name}"
                )
                request_rebuild(
                    rebuild_flag(rule_name, run),
                    f"{len(lost)} file(s) missing in {folder}",
                )


def adopt_shard_records():
    """Records of finished per-image folders written under another K become the current rule's (integrity.py)."""
    if not workflow.is_main_process:
        return
    for stage in PER_IMAGE_STAGES:
        producer = getattr(rules, final_rule(stage)).rule
        for run in RUNS:
            folder = stage_folder(stage).replace("{run}", run)
            shards = (
                []
                if SHARDS == 1
                else expand(shard_folder(folder), shard=range(1, SHARDS + 1))
            )
            if os.path.isdir(folder) and adopt_record(
                folder,
                {stage, f"{stage}_merge"},
                producer.name,
                producer.shellcmd,
                f"{folder}.shard-",
                shards,
            ):
                logger.info(f"{folder}: finished with another execution.shards; kept")
