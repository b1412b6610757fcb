"""Experiments: several configurations of the pipeline in one DAG (params `experiments` and `compare`).

Each experiment is a list of overlays applied after the params files the workflow was started with; every experiment
x run is a branch of the DAG from train_cam on, under `work/experiments/<name>/runs/<seed>/` (results/ and logs/
alike). What every experiment shares is made once: the downloads, the dataset, the saliency maps, the demo's
pretraining; so an experiment's overlays may not set the sections that decide them (`SHARED`). Without experiments
the DAG is the single-configuration one, with its paths (`work/runs/<seed>/`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ppcseg.config import load_params, read_yaml
from ppcseg.utils.errors import ParamsError

# Sections every experiment shares: how the study runs (runs, execution, experiments, comparison, report) and the
# stages made once (data, pretrain, and the released checkpoints, whose rules replace training for every branch).
SHARED = ("runs", "execution", "experiments", "compare", "comparison", "report", "data", "pretrain")
RELEASED_SECTIONS = ("cam", "affinity", "segmentation")
# A name becomes a path component and a Snakemake wildcard value: letters, digits, '_' and '-', not first '-'.
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def experiment_files(params_files: list[str], config: dict[str, Any]) -> dict[str, list[str]]:
    """name -> the params files of the experiment (the study's, then its overlays), in the order of `experiments`."""
    experiments = config.get("experiments") or {}
    files = {}
    for name, overlays in experiments.items():
        if not NAME.fullmatch(name):
            raise ParamsError(
                f"experiments: {name!r} is not a safe name (letters, digits, '_' and '-', not starting with '-'): "
                "it becomes a folder name"
            )
        for overlay in overlays:
            if not Path(overlay).is_file():
                raise ParamsError(f"experiments.{name}: overlay {overlay} not found")
            touched = sorted(set(read_yaml(overlay)) & set(SHARED))
            if touched:
                raise ParamsError(
                    f"experiments.{name}: {overlay} sets {', '.join(touched)}, which every experiment shares: "
                    "set it in the study's params files instead"
                )
        files[name] = [*params_files, *overlays]
    for pair in config.get("compare") or []:
        for name in pair:
            if name not in experiments:
                known = ", ".join(experiments) or "none"
                raise ParamsError(f"compare: {name!r} is not an experiment (experiments: {known})")
    return files


def experiment_configs(files: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """name -> the experiment's merged and validated params; refuses released checkpoints that differ between them."""
    configs = {name: load_params(paths) for name, paths in files.items()}
    for section in RELEASED_SECTIONS:
        values = {repr(config[section]["released"]) for config in configs.values()}
        if len(values) > 1:
            raise ParamsError(
                f"experiments: {section}.released differs between experiments; released checkpoints replace "
                "training for every branch, so set it in the study's params files"
            )
    return configs


def identical_experiments(configs: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of experiments whose settings are identical (their branches would compute the same thing)."""
    names = list(configs)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if configs[a] == configs[b]]
