"""The `ppcseg` command: one subcommand per pipeline stage.

Every stage module exposes:
    PARAMS_KEYS: tuple[str, ...]      -- the params keys (dotted) it reads: its rule's re-run trigger and DVC `params:`
    add_arguments(parser)            -- its own flags (input and output paths)
    run(args, params)                -- does the work; raises InputError for bad input
Modules are imported lazily so that `ppcseg --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from ppcseg.utils.errors import InputError

STAGES: dict[str, str] = {
    "make-synthetic-voc": "ppcseg.data.synthetic",
    "download": "ppcseg.data.download",
    "prepare-voc": "ppcseg.data.prepare",
    "prepare-saliency": "ppcseg.data.saliency",
    "pretrain-backbone": "ppcseg.cam.pretrain",
    "convert-released": "ppcseg.released.convert",
    "train-cam": "ppcseg.cam.train",
    "infer-cam": "ppcseg.cam.infer",
    "eval-seeds": "ppcseg.evaluation.seeds",
    "affinity-labels": "ppcseg.refine.affinity_labels",
    "train-affinity": "ppcseg.refine.train_affinity",
    "random-walk": "ppcseg.refine.random_walk",
    "crf-masks": "ppcseg.refine.crf_masks",
    "eval-masks": "ppcseg.evaluation.masks",
    "train-seg": "ppcseg.segment.train",
    "eval-seg": "ppcseg.segment.eval",
    "export-predictions": "ppcseg.segment.export",
    "merge-shards": "ppcseg.workflow.merge_shards",
    "collect-results": "ppcseg.evaluation.collect",
    "compare-experiments": "ppcseg.evaluation.compare",
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
        stage_parser.add_argument(
            "--log-file",
            default=None,
            metavar="FILE",
            help="send all output of the stage to FILE (errors also to stderr)",
        )
        if name == chosen:  # only the chosen stage's module is imported
            stage_module(name).add_arguments(stage_parser)
    return parser


def redirect_output(path: str) -> TextIO:
    """Point file descriptors 1 and 2 (Python and C level, child processes too) at `path`.

    Returns a handle on the original stderr, for the one-line error message the user must see.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    original_stderr = os.fdopen(os.dup(2), "w", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    # Every process appends (so DDP ranks never overwrite each other's lines); rank 0 (torchrun or srun) starts the
    # file afresh.
    from ppcseg.utils.runtime import env_ranks

    rank, _, _ = env_ranks()
    mode = os.O_APPEND | (os.O_TRUNC if rank == 0 else 0)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    return original_stderr


def ensure_cache_dir() -> None:
    """Point XDG_CACHE_HOME at a temporary folder when ~/.cache cannot be written (unwritable or missing HOME).

    Snakemake (in export-dvc), torch and mmengine create caches there at start-up and would die with an OSError
    about ~/.cache, though no stage needs a cache that outlives the run.
    """
    if os.environ.get("XDG_CACHE_HOME"):
        return
    cache = Path.home() / ".cache"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if os.access(cache, os.W_OK | os.X_OK):
            return
    except OSError:
        pass
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ppcseg-cache-")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    user_stderr = redirect_output(args.log_file) if args.log_file else sys.stderr
    from ppcseg.utils.runtime import set_threads, setup_logging

    setup_logging()
    log = logging.getLogger("ppcseg")
    ensure_cache_dir()
    try:
        from ppcseg.config import load_params

        module = stage_module(args.stage)
        params = load_params(args.params or ["params.yaml"])
        if os.environ.get("DVC_STAGE") and args.stage != "export-dvc":
            # Run by `dvc repro` / `dvc exp run`: not beside a Snakemake run (workflow/locks.py), and the stage must
            # belong to the pipeline these params describe.
            from ppcseg.workflow.export_dvc import check_dvc_yaml
            from ppcseg.workflow.locks import snakemake_lock

            root = Path(os.environ.get("DVC_ROOT", "."))
            if lock := snakemake_lock(root):
                raise InputError(
                    f"{lock}: a Snakemake run holds this working copy; run dvc when it has finished (after a crash, "
                    "`snakemake --unlock` frees it)"
                )
            check_dvc_yaml(root, args.params or ["params.yaml"])
        set_threads(args.threads)
        module.run(args, params)
    except (InputError, OSError) as err:
        # Bad input, an unwritable folder, a full disk: one message naming the file or key, no traceback.
        if isinstance(err, OSError):
            message = f"{err.filename}: {err.strerror or err}" if err.filename else str(err)
        else:
            message = str(err)
        if args.log_file:
            log.error("%s", message)
        print(f"ppcseg {args.stage}: error: {message}", file=user_stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C (or Snakemake stopping the job): every stage writes atomically or resumes, so rerunning is safe.
        message = "interrupted, resume with the same command"
        if args.log_file:
            log.error("%s", message)
        print(f"ppcseg {args.stage}: {message}", file=user_stderr)
        return 130
    except BaseException:
        if user_stderr is not sys.stderr:
            print(f"ppcseg {args.stage}: failed, see {args.log_file}", file=user_stderr)
        raise
    return 0
