# Checks made before Snakemake plans the jobs, so that re-runs redo what changed (src/ppcseg/workflow/integrity.py):
# the dataset manifest follows edits inside the dataset, and a rule whose input was removed (a stopped or failed job,
# a deleted intermediate) or whose per-image output lost files is made to re-run through its rebuild flag.

import glob
import os
import re

from snakemake.logging import logger

from ppcseg.utils.per_image import missing_outputs, stage_outputs
from ppcseg.utils.errors import InputError
from ppcseg.data.manifest import manifest_path, refresh_manifest
from ppcseg.workflow.integrity import (
    ensure_flags,
    rebuild_flag,
    request_rebuild,
)

MANIFEST = str(manifest_path(ROOT))
# Per-image stages: output folder -> rule (the stage's name as in utils/per_image.py stage_outputs).
PER_IMAGE_OUTPUTS = {
    "work/cam/cams": "infer_cam",
    "work/affinity/labels": "affinity_labels",
    "work/masks/random_walk": "random_walk",
    "work/masks/crf": "crf_masks",
}


def _existing(pattern):
    """The files of an output pattern that exist (wildcards matched by glob)."""
    if "{" not in pattern:
        return [pattern] if os.path.exists(pattern) else []
    return glob.glob(re.sub(r"\{[^}]*\}", "*", pattern))


def check_integrity():
    """Refresh the manifest and bump the rebuild flag of every rule whose outputs stand on missing inputs."""
    if not workflow.is_main_process:
        return
    if refresh_manifest(ROOT):
        logger.info(
            f"{MANIFEST}: the dataset changed; the stages that read it will re-run"
        )
    rules = [
        r for r in workflow.rules if r.output and not r.name.startswith("download_")
    ]
    ensure_flags(r.name for r in rules)
    producers = {str(f): r.name for r in rules for f in r.output if "{" not in str(f)}
    for r in rules:
        if not any(_existing(str(f)) for f in r.output):
            continue  # nothing built yet: Snakemake runs it when something needs it
        missing = [
            str(f)
            for f in r.input
            if str(f) in producers and not os.path.exists(str(f))
        ]
        if missing:
            logger.info(
                f"{r.name}: its input {missing[0]} is missing: rebuilding it and what depends on it"
            )
            request_rebuild(r.name, f"missing input {missing[0]}")
    for folder, rule_name in PER_IMAGE_OUTPUTS.items():
        if rule_name not in producers.values() or not os.path.isdir(folder):
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
            request_rebuild(rule_name, f"{len(lost)} file(s) missing in {folder}")
