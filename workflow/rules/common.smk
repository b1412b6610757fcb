# The names the rule files share. Only this file defines names that the other rule files use; they link to each other
# through `rules.<name>.output`, so the Snakefile includes them upstream first. Parsing writes nothing but the
# dataset manifest, and that only when the dataset's content changed (docs/reliability.md).

import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from ppcseg.config import load_params, validate_params
from ppcseg.data.manifest import manifest_path, refresh_manifest
from ppcseg.utils.errors import InputError, ParamsError
from ppcseg.utils.shards import lost_files
from ppcseg.workflow import internals, stage_deps
from ppcseg.workflow.locks import DVC_LOCK, dvc_holds
from ppcseg.workflow.experiments import (
    experiment_configs,
    experiment_files,
    identical_experiments,
)

# ------------------------------------------------------------------------------------------------------- params

# params.yaml first, then the overlays given with --configfile, exactly as Snakemake merged them into `config`.
PARAMS_FILES = ["params.yaml"] + [
    os.path.relpath(f)
    for f in internals.overlay_files(workflow)
    if Path(f).resolve() != Path("params.yaml").resolve()
]
try:
    _validated = load_params(PARAMS_FILES)
    # `execution` says how the jobs are spread, never what they compute: it alone may come from --config
    # (`ppcseg export-dvc` asks for the unsharded DAG that way).
    validate_params(config, source="--config")
except ParamsError as err:
    raise WorkflowError(f"invalid parameters: {err}")
if {**_validated, "execution": config["execution"]} != config:
    raise WorkflowError(
        "--config key=value overrides do not reach the stages, which read the params files: "
        "put the values in a YAML overlay and pass it with --configfile"
    )

# ------------------------------------------------------------------------------------------------- branches

# The independent runs (`runs`) of each experiment (`experiments`, workflow/experiments.py) are the branches of the
# DAG from train_cam onward, under work/<BRANCH>/ (results/, logs/ alike); the downloads, the dataset, the saliency
# maps and the demo's pretraining are made once. Without experiments a branch is a run, under work/runs/<seed>/.
RUNS = [str(run) for run in config["runs"]]
try:
    EXPERIMENT_FILES = experiment_files(PARAMS_FILES, config)
    EXPERIMENT_CONFIGS = experiment_configs(EXPERIMENT_FILES)
except ParamsError as err:
    raise WorkflowError(f"invalid parameters: {err}")
for _a, _b in identical_experiments(EXPERIMENT_CONFIGS):
    logger.warning(
        f"experiments: {_a} and {_b} have identical settings: their branches compute the same"
    )
EXPERIMENTS = list(EXPERIMENT_FILES)
# The [baseline, method] pairs of results/comparison.csv.
COMPARE = [tuple(pair) for pair in config["compare"]]
BRANCH = "experiments/{experiment}/runs/{run}" if EXPERIMENTS else "runs/{run}"
if not EXPERIMENTS:  # one configuration: the params files themselves
    EXPERIMENT_FILES, EXPERIMENT_CONFIGS = {"": PARAMS_FILES}, {"": config}


wildcard_constraints:
    run=r"\d+",
    shard=r"\d+",
    experiment="|".join(map(re.escape, EXPERIMENTS)) or "(?!)",


def branches():
    """The wildcard values of every branch: (experiment, run), experiment by experiment in the params' order."""
    return [(experiment, run) for experiment in EXPERIMENT_CONFIGS for run in RUNS]


def in_branch(pattern, experiment, run):
    """A `BRANCH` pattern filled in for one branch."""
    return str(pattern).replace("{experiment}", experiment).replace("{run}", run)


def every_branch(*patterns):
    """The files of `BRANCH` patterns for every branch, pattern by pattern."""
    return [in_branch(p, e, r) for p in patterns for e, r in branches()]


def branch_config(wildcards):
    """The merged params of the job's experiment (the study's for a shared stage)."""
    return EXPERIMENT_CONFIGS.get(wildcards.get("experiment", ""), config)


def branch_args(patterns, flag=None):
    """Per branch `<flag> <seed> <its files>`: by default `--run <seed> ...`, with experiments `--experiment-run
    <name> <seed> ...` (collect-results); compare-experiments takes `--run <name> <seed> ...`.
    """
    args = []
    for experiment, run in branches():
        prefix = flag or ("--experiment-run" if EXPERIMENTS else "--run")
        name = f" {experiment}" if experiment else ""
        files = " ".join(shlex.quote(in_branch(p, experiment, run)) for p in patterns)
        args.append(f"{prefix}{name} {run} {files}")
    return " ".join(args)


# ----------------------------------------------------------------------------------------------- the dataset

ROOT = config["data"]["root"]
SYNTHETIC = config["data"]["source"] == "synthetic"
SALIENCY = f"{ROOT}/SaliencyMaps" if SYNTHETIC else "data/saliency"
# Stages whose `<stage>.released` is set take the authors' converted checkpoint instead of training (released.smk).
RELEASED = {
    stage: config[stage]["released"] for stage in ("cam", "affinity", "segmentation")
}
# The package sources the stages run (ppcseg is installed editable from here).
SRC = Path("src")

# One tool at a time in a working copy (workflow/locks.py): not while `dvc repro` runs here (but a stage that DVC
# runs reads the DAG itself, to check dvc.yaml).
if not os.environ.get("DVC_STAGE") and dvc_holds("."):
    raise WorkflowError(
        f"{DVC_LOCK}: a DVC command holds this working copy; run snakemake when it has finished"
    )

# The manifest follows the dataset's content, so an edit inside the folder re-runs the stages that read it.
MANIFEST = str(manifest_path(ROOT))
try:
    if refresh_manifest(ROOT):
        logger.info(
            f"{MANIFEST}: the dataset changed; the stages that read it will re-run"
        )
except InputError as err:
    raise WorkflowError(str(err))

# ------------------------------------------------------------------------------------------- what a rule takes


def config_value(params, key):
    """The merged params value at a dotted key."""
    value = params
    for part in key.split("."):
        value = value[part]
    return value


def settings(stage, **fields):
    """The params keys the stage's module declares (PARAMS_KEYS, `{field}`s filled in) with their values; as a param
    of its rule, Snakemake re-runs the job when they change. export-dvc turns the same keys into the DVC `params:`.
    """
    keys = [key.format(**fields) for key in stage_deps.params_keys(stage, SRC)]
    return json.dumps({key: config_value(config, key) for key in keys}, sort_keys=True)


def branch_settings(stage):
    """`settings` of a stage in a branch: the values of the job's experiment."""
    keys = stage_deps.params_keys(stage, SRC)

    def values(wildcards):
        params = branch_config(wildcards)
        return json.dumps(
            {key: config_value(params, key) for key in keys}, sort_keys=True
        )

    return values


def stage_inputs(stage, reads_data=True):
    """The inputs every stage takes besides its own: the package files it runs (its module's import closure: editing
    one re-runs it) and, for a stage that reads the dataset, the folder and its manifest.
    """
    inputs = {"code": list(stage_deps.code_files(stage, SRC))}
    if reads_data:
        inputs |= {"data": ROOT, "manifest": MANIFEST}
    return inputs


def params_args(wildcards, input):
    """The `--params` flags of every stage command: the job's experiment's files in a branch, else the study's.

    A function of `input`, so Snakemake counts it as derived and leaves it out of its params re-run trigger: adding
    an overlay then re-runs only the jobs whose `settings` values change, not every job down to the downloads.
    """
    files = EXPERIMENT_FILES.get(wildcards.get("experiment", ""), PARAMS_FILES)
    # quoted: an overlay path with a space must stay one argument
    return " ".join(f"--params {shlex.quote(f)}" for f in files)


def backbone_weights(backbone, pretrained=True):
    """Pretrained weights of a backbone: ImageNet from the download stage, or (tiny) from pretrain_backbone."""
    if not pretrained:
        return []
    return [
        {"resnet38": "data/weights/resnet38.params"}.get(
            backbone, f"data/weights/{backbone}.pth"
        )
    ]


def branch_weights(section):
    """An input function: the pretrained weights of the backbone `<section>.backbone` of the job's experiment."""

    def weights(wildcards):
        params = branch_config(wildcards)[section]
        return backbone_weights(params["backbone"], params.get("pretrained", True))

    return weights


def opt_flag(flag, files):
    return f"{flag} {shlex.quote(str(files[0]))}" if files else ""


def weights_flag(wildcards, input):
    """`--weights <file>` when the job takes pretrained weights (its `weights` input)."""
    return opt_flag("--weights", input.weights)


def is_eps(wildcards):
    """Whether the job's experiment follows the EPS route (saliency, CRF masks) rather than SEAM's."""
    return branch_config(wildcards)["cam"]["method"] == "eps"


def scaled(paper, demo):
    """A resource request at paper scale, or the small demo one (the generated dataset)."""
    return demo if SYNTHETIC else paper


def launcher(resources):
    """`ppcseg`, or torchrun with one process per GPU when a rule is given several (DDP, global batch unchanged)."""
    gpus = int(resources.get("gpu", 0) or 0)
    if gpus <= 1:
        return "ppcseg"
    return f"torchrun --standalone --nproc-per-node {gpus} -m ppcseg"


# Jobs run `ppcseg` from the interpreter that runs Snakemake, activated or not.


envvars:
    "PATH",


os.environ["PATH"] = (
    os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
)

# ------------------------------------------------------------------------------------------- per-image stages

# execution.shards (K): with K > 1 each per-image rule runs as K independent jobs over disjoint parts of its image
# list into temporary shard folders, and its `<rule>_merge` job (shards.smk) joins them into the folder the next
# stages read, byte-identical to one job's (Snakemake's scatter-gather pattern). Changing K re-runs those stages.
SHARDS = config["execution"]["shards"]
SHARD_SUFFIX = f".shard-{{shard}}-of-{SHARDS}"


def per_image_output(folder):
    """A per-image rule's output: its folder (K = 1) or, with K > 1, its temporary shard folder."""
    if SHARDS == 1:
        return directory(folder)
    return temp(directory(folder + SHARD_SUFFIX))


def per_image_log(name):
    """`logs/<BRANCH>/<name>.log`, one per shard with K > 1."""
    shard = "" if SHARDS == 1 else ".shard-{shard}"
    return f"logs/{BRANCH}/{name}{shard}.log"


def shard_arg(wildcards, output):
    """`--shard I/K` for a shard job, nothing with K = 1. A function of `output`, so Snakemake counts it as derived
    (the recorded params of a finished folder do not name K)."""
    return f"--shard {wildcards.shard}/{SHARDS}" if SHARDS > 1 else ""


def folder_of(rule):
    """The `BRANCH` pattern of the folder a per-image rule hands on (its output, less the shard suffix)."""
    return str(rule.output[0]).removesuffix(SHARD_SUFFIX)


def writer_of(rule):
    """Who writes the folder a per-image rule hands on (the rule itself with K = 1, else its merge job)."""
    name = rule.rule.name
    return name if SHARDS == 1 else f"{name}_merge"


def finished(rule, branch=None):
    """An input function giving the finished folder of a per-image rule for the job's branch (or `branch`, an
    (experiment, run) pair).

    The folder's listing (utils/shards.py) names every file its stage wrote; Snakemake sees a folder only as a whole,
    so a folder that lost files is refused here, before any job runs, unless the user forces its rule.
    """
    folder = folder_of(rule)

    def checked(wildcards):
        experiment, run = branch or (wildcards.get("experiment", ""), wildcards.run)
        path = in_branch(folder, experiment, run)
        lost = lost_files(path)
        forced = internals.forced_rules(workflow)
        if lost and forced is not None and writer_of(rule) not in forced:
            raise WorkflowError(
                f"{path}: {len(lost)} file(s) of its listing are gone, e.g. {lost[0]}; "
                f"rebuild it with `--forcerun {writer_of(rule)}`"
            )
        return path

    return checked


def masks_rule(params):
    """The pseudo-masks of a route come from the random walk (SEAM) or the CRF (EPS)."""
    return rules.crf_masks if params["cam"]["method"] == "eps" else rules.random_walk


def finished_masks(branch=None):
    """An input function giving the finished pseudo-mask folder of the job's branch (or `branch`)."""

    def checked(wildcards):
        experiment = branch[0] if branch else wildcards.get("experiment", "")
        return finished(masks_rule(EXPERIMENT_CONFIGS[experiment]), branch)(wildcards)

    return checked


def branch_outputs(params):
    """The `BRANCH` patterns of every output of one branch of an experiment with these params (the default target
    names them all, so that Snakemake rebuilds any that is missing)."""
    seam = params["cam"]["method"] == "seam"
    trains_affinity = seam and not RELEASED["affinity"]
    return [
        rules.train_cam.output.checkpoint,
        *([] if RELEASED["cam"] else [rules.train_cam.output.loss]),
        folder_of(rules.infer_cam),
        *rules.eval_seeds.output,
        *([folder_of(rules.affinity_labels)] if trains_affinity else []),
        *([rules.train_affinity.output.checkpoint] if seam else []),
        *([rules.train_affinity.output.loss] if trains_affinity else []),
        folder_of(masks_rule(params)),
        *rules.eval_masks.output,
        rules.train_seg.output[0],
        *expand(
            rules.eval_seg.output, protocol=["single", "msf-crf"], allow_missing=True
        ),
    ]
