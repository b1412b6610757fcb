"""One flag vocabulary across the stages (README "What the pipeline does"): a stage's outputs are `--out` (its main
output) or `--out-<what>`, its inputs are named by what they are and never `--out*`. Checked on the commands the rules
really write: every job of every route is parsed with its stage's own parser, and each flag's paths are compared with
the job's declared inputs and outputs."""

from __future__ import annotations

import argparse
import shlex
from functools import cache
from typing import Any

import pytest

from ppcseg.cli import STAGES, build_parser
from ppcseg.workflow.export_dvc import snakemake_jobs
from tests.workflow.helpers import REPO

pytestmark = pytest.mark.workflow

# Between them these DAGs hold a job of every rule (the test checks it): the paper route on downloads, the EPS route
# (saliency, CRF masks, ResNet-101), the demo (generated data, pretrained tiny backbone), the released models, and the
# demo and the EPS route with two runs and two shards (shard and merge jobs of the SEAM and EPS per-image stages),
# and the demo's comparison of experiments.
CONFIGS = [
    [],
    ["config/routes/eps_ppc.yaml"],
    ["config/demo.yaml"],
    ["config/released/seam_ppc.yaml"],
    ["config/demo.yaml", "tests/workflow/two_runs_two_shards.yaml"],
    ["config/routes/eps_ppc.yaml", "tests/workflow/two_runs_two_shards.yaml"],
    ["config/demo.yaml", "config/demo_compare.yaml"],
]
# Stages no rule runs: started by hand, each writes the file or folder named by --out.
BY_HAND = {"export-predictions", "export-dvc"}
TRAINING_RULES = ("train_cam", "train_seg")


@cache
def jobs(overlays: tuple[str, ...], gpus: int = 1) -> list[Any]:
    resources = {rule: {"gpu": gpus} for rule in TRAINING_RULES} if gpus != 1 else None
    return snakemake_jobs(REPO / "Snakefile", ["params.yaml", *overlays], resources, unsharded=False)


def stage_parser(stage: str) -> argparse.ArgumentParser:
    return build_parser([stage])._subparsers._group_actions[0].choices[stage]


def stage_command(job: Any) -> tuple[str, list[str]]:
    """(stage, its arguments) of the job's command, after `ppcseg` or `torchrun ... -m ppcseg`."""
    words = shlex.split(job.shellcmd)
    start = words.index("ppcseg") + 1
    return words[start], words[start + 1 :]


def given_flags(stage: str, arguments: list[str]) -> dict[str, list[str]]:
    """Every flag on the command line, with its value(s) as the stage's parser reads them, as strings."""
    parser = stage_parser(stage)
    namespace = parser.parse_args(arguments)
    flags = {}
    for action in parser._actions:
        given = [s for s in action.option_strings if s in arguments]
        value = getattr(namespace, action.dest, None)
        if given and value is not None:
            flags[given[0]] = [str(v) for v in (value if isinstance(value, list) else [value])]
    return flags


def is_output_flag(flag: str) -> bool:
    return flag == "--out" or flag.startswith("--out-")


@pytest.mark.parametrize("overlays", CONFIGS, ids=lambda o: "+".join(o) or "params.yaml")
def test_outputs_are_out_flags_and_out_flags_are_outputs(overlays):
    problems = []
    for job in jobs(tuple(overlays)):
        stage, arguments = stage_command(job)
        outputs = {str(f) for f in job.output}
        flags = given_flags(stage, arguments)
        for flag, values in flags.items():
            if any(v in outputs for v in values) and not is_output_flag(flag):
                problems.append(f"{job.rule.name}: output {values} passed as {flag}, not --out / --out-<what>")
            if is_output_flag(flag) and not set(values) <= outputs:
                problems.append(f"{job.rule.name}: {flag} {values} is not among the rule's outputs {sorted(outputs)}")
        if not any(is_output_flag(flag) for flag in flags):
            problems.append(f"{job.rule.name}: no --out flag")
    assert problems == []


def test_the_routes_cover_every_rule_and_every_stage():
    """A new rule or stage joins the check above: each rule has a job in one of the DAGs, each stage is run by a rule
    or listed as run by hand."""
    all_jobs = [job for overlays in CONFIGS for job in jobs(tuple(overlays))]
    defined = {rule.name for job in all_jobs for rule in job.rule.workflow.rules if rule.name != "all"}
    assert defined - {job.rule.name for job in all_jobs} == set()
    assert set(STAGES) - {stage_command(job)[0] for job in all_jobs} == BY_HAND
    for stage in BY_HAND:
        assert [a for a in stage_parser(stage)._actions if is_output_flag(max(a.option_strings or [""], key=len))]


def test_several_gpus_change_only_the_launch():
    """With 2 GPUs a training rule starts its stage through torchrun; the stage reads the launch from the environment
    (utils/distributed.py) as srun's would, so its own arguments stay those of the 1-GPU command."""
    one = {job.rule.name: job for job in jobs(("config/demo.yaml",)) if job.rule.name in TRAINING_RULES}
    two = {job.rule.name: job for job in jobs(("config/demo.yaml",), 2) if job.rule.name in TRAINING_RULES}
    assert set(one) == set(two) == set(TRAINING_RULES)
    for rule in TRAINING_RULES:
        assert shlex.split(two[rule].shellcmd)[:4] == ["torchrun", "--standalone", "--nproc-per-node", "2"]
        assert stage_command(two[rule]) == stage_command(one[rule])
