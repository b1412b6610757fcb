"""The command line itself: flags of the stages that Snakemake starts through torchrun must reach them intact."""

from __future__ import annotations

import pytest
from torch.distributed.run import get_args_parser

from ppcseg.cli import build_parser

TORCHRUN_OPTIONS = [s for action in get_args_parser()._actions for s in action.option_strings]


@pytest.mark.parametrize("stage", ["train-cam", "train-seg"])
def test_multi_gpu_stage_flags_are_not_taken_by_torchrun(stage):
    """torchrun's parser matches abbreviations anywhere on its command line: `--log` was an ambiguous prefix of
    `--log-dir` / `--logs-specs` and stopped every multi-GPU launch. No flag of these stages may prefix one of its."""
    stage_parser = build_parser([stage])._subparsers._group_actions[0].choices[stage]
    flags = [
        s for action in stage_parser._actions for s in action.option_strings if s.startswith("--") and s != "--help"
    ]
    assert "--log-file" in flags
    clashes = {flag: [o for o in TORCHRUN_OPTIONS if o.startswith(flag)] for flag in flags}
    assert {flag: opts for flag, opts in clashes.items() if opts} == {}
