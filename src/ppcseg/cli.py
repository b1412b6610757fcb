"""The `ppcseg` command: one subcommand per pipeline stage.

Every stage module exposes:
    PARAMS_SECTIONS: tuple[str, ...]  -- top-level params.yaml sections it reads (DVC `params:` and Snakemake triggers)
    add_arguments(parser)            -- its own flags (input and output paths)
    run(args, params)                -- does the work; raises InputError for bad input
Modules are imported lazily so that `ppcseg --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ppcseg.utils.errors import InputError

STAGES: dict[str, str] = {
    "make-synthetic-voc": "ppcseg.data.synthetic",
    "download": "ppcseg.data.download",
    "prepare-voc": "ppcseg.data.prepare",
    "train-cam": "ppcseg.cam.train",
    "infer-cam": "ppcseg.cam.infer",
    "eval-seeds": "ppcseg.evaluation.seeds",
    "affinity-labels": "ppcseg.refine.affinity_labels",
    "train-affinity": "ppcseg.refine.train_affinity",
    "random-walk": "ppcseg.refine.random_walk",
    "crf-masks": "ppcseg.refine.crf_masks",
    "eval-masks": "ppcseg.evaluation.masks",
    "train-seg": "ppcseg.segment.train",
    "eval-seg": "ppcseg.segment.test",
    "export-predictions": "ppcseg.segment.export",
    "collect-results": "ppcseg.evaluation.collect",
    "report": "ppcseg.report.report",
    "export-dvc": "ppcseg.workflow.export_dvc",
}


def stage_module(name: str):
    return importlib.import_module(STAGES[name])


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppcseg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in STAGES.items():
        stage_parser = sub.add_parser(name, help=f"run the {name} stage ({module_name})")
        stage_parser.add_argument(
            "--params",
            action="append",
            default=[],
            metavar="YAML",
            help="params file; repeat to apply overlays in order (params.yaml first)",
        )
        stage_parser.add_argument("--threads", type=int, default=None, help="CPU threads for this stage")
        if name == chosen:  # only the chosen stage's module is imported
            stage_module(name).add_arguments(stage_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from ppcseg.utils.runtime import set_threads, setup_logging

    setup_logging()
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    log = logging.getLogger("ppcseg")
    try:
        from ppcseg.config import load_params

        module = stage_module(args.stage)
        params = load_params(args.params or ["params.yaml"])
        set_threads(args.threads)
        module.run(args, params)
    except InputError as err:
        log.error("%s", err)
        print(f"ppcseg {args.stage}: error: {err}", file=sys.stderr)
        return 2
    return 0
