# The names the rule files share. Only this file defines names that the other rule files use; they link to each other
# through `rules.<name>.output`, so the Snakefile includes them upstream first. Parsing writes nothing but the
# dataset manifest, and that only when the dataset's content changed (docs/reliability.md).

import json
import os
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

# The independent runs: each seed in `runs` is a branch of the DAG from train_cam onward (outputs under
# work/runs/<seed>/, results/runs/<seed>/, logs/runs/<seed>/); data, downloads and pretraining are shared.
RUNS = [str(run) for run in config["runs"]]


wildcard_constraints:
    run=r"\d+",
    shard=r"\d+",


def run_args(patterns):
    """`--run <seed> <its files>` for every run, in the order of `runs` (collect-results)."""
    return " ".join(
        f"--run {run} "
        + " ".join(shlex.quote(p.replace("{run}", run)) for p in patterns)
        for run in RUNS
    )


ROOT = config["data"]["root"]
METHOD = config["cam"]["method"]
SYNTHETIC = config["data"]["source"] == "synthetic"
SALIENCY = f"{ROOT}/SaliencyMaps" if SYNTHETIC else "data/saliency"
# Stages whose `<stage>.released` is set take the authors' converted checkpoint instead of training (released.smk).
RELEASED = {
    stage: config[stage]["released"] for stage in ("cam", "affinity", "segmentation")
}
# The package sources the stages run (ppcseg is installed editable from here).
SRC = Path("src")

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


def config_value(key):
    """The merged params value at a dotted key."""
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def settings(stage, **fields):
    """The params keys the stage's module declares (PARAMS_KEYS, `{field}`s filled in) with their values; as a param
    of its rule, Snakemake re-runs the job when they change. export-dvc turns the same keys into the DVC `params:`.
    """
    keys = [key.format(**fields) for key in stage_deps.params_keys(stage, SRC)]
    return json.dumps({key: config_value(key) for key in keys}, sort_keys=True)


def stage_inputs(stage, reads_data=True):
    """The inputs every stage takes besides its own: the package files it runs (its module's import closure: editing
    one re-runs it) and, for a stage that reads the dataset, the folder and its manifest.
    """
    inputs = {"code": list(stage_deps.code_files(stage, SRC))}
    if reads_data:
        inputs |= {"data": ROOT, "manifest": MANIFEST}
    return inputs


# quoted: an overlay path with a space must stay one argument
PARAMS_ARGS = " ".join(f"--params {shlex.quote(f)}" for f in PARAMS_FILES)


def params_args(wildcards, input):
    """The `--params` flags of every stage command.

    A function of `input`, so Snakemake counts it as derived and leaves it out of its params re-run trigger: adding
    an overlay then re-runs only the jobs whose `settings` values change, not every job down to the downloads.
    """
    return PARAMS_ARGS


def backbone_weights(backbone, pretrained=True):
    """Pretrained weights of a backbone: ImageNet from the download stage, or (tiny) from pretrain_backbone."""
    if not pretrained:
        return []
    return [
        {"resnet38": "data/weights/resnet38.params"}.get(
            backbone, f"data/weights/{backbone}.pth"
        )
    ]


def opt_flag(flag, files):
    return f"{flag} {shlex.quote(str(files[0]))}" if files else ""


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
    """`logs/runs/{run}/<name>.log`, one per shard with K > 1."""
    shard = "" if SHARDS == 1 else ".shard-{shard}"
    return f"logs/runs/{{run}}/{name}{shard}.log"


def shard_arg(wildcards, output):
    """`--shard I/K` for a shard job, nothing with K = 1. A function of `output`, so Snakemake counts it as derived
    (the recorded params of a finished folder do not name K)."""
    return f"--shard {wildcards.shard}/{SHARDS}" if SHARDS > 1 else ""


def folder_of(rule):
    """The `{run}` pattern of the folder a per-image rule hands on (its output, less the shard suffix)."""
    return str(rule.output[0]).removesuffix(SHARD_SUFFIX)


def writer_of(rule):
    """Who writes the folder a per-image rule hands on (the rule itself with K = 1, else its merge job)."""
    name = rule.rule.name
    return name if SHARDS == 1 else f"{name}_merge"


def finished(rule, run=None):
    """An input function giving the finished folder of a per-image rule for the job's run (or `run`).

    The folder's listing (utils/shards.py) names every file its stage wrote; Snakemake sees a folder only as a whole,
    so a folder that lost files is refused here, before any job runs, unless the user forces its rule.
    """
    folder = folder_of(rule)

    def checked(wildcards):
        path = folder.replace("{run}", run or wildcards.run)
        lost = lost_files(path)
        forced = internals.forced_rules(workflow)
        if lost and forced is not None and writer_of(rule) not in forced:
            raise WorkflowError(
                f"{path}: {len(lost)} file(s) of its listing are gone, e.g. {lost[0]}; "
                f"rebuild it with `--forcerun {writer_of(rule)}`"
            )
        return path

    return checked


def masks_rule():
    """The pseudo-masks of the route come from the random walk (SEAM) or the CRF (EPS)."""
    return rules.random_walk if METHOD == "seam" else rules.crf_masks
