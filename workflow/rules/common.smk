import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from ppcseg.config import load_params
from ppcseg.workflow import stage_deps
from ppcseg.utils.errors import ParamsError

# params.yaml first, then the overlays given with --configfile, exactly as Snakemake merged them into `config`.
PARAMS_FILES = ["params.yaml"] + [
    os.path.relpath(f)
    for f in workflow.overwrite_configfiles
    if Path(f).resolve() != Path("params.yaml").resolve()
]
try:
    _validated = load_params(PARAMS_FILES)
except ParamsError as err:
    raise WorkflowError(f"invalid parameters: {err}")
if _validated != config:
    raise WorkflowError(
        "--config key=value overrides do not reach the stages, which read the params files: "
        "put the values in a YAML overlay and pass it with --configfile"
    )

# The independent runs: each seed in `runs` is a branch of the DAG from train_cam onward (outputs under
# work/runs/<seed>/, results/runs/<seed>/, logs/runs/<seed>/); data, downloads and pretraining are shared.
RUNS = [str(run) for run in config["runs"]]


wildcard_constraints:
    run=r"\d+",


def per_run(pattern):
    """A `{run}` pattern for every run, in the order of `runs`."""
    return expand(pattern, run=RUNS)


def run_args(patterns):
    """`--run <seed> <its files>` for every run, in the order of `runs` (collect-results)."""
    return " ".join(
        f"--run {run} "
        + " ".join(shlex.quote(p.replace("{run}", run)) for p in patterns)
        for run in RUNS
    )


# Shards of the per-image stages (execution.shards, K): with K > 1 each per-image rule runs as K jobs over disjoint
# parts of the image list into temporary shard folders, and its `<rule>_merge` job (workflow/rules/shards.smk) joins
# them into the folder the next stages read. Read here only: changing K re-runs nothing that is finished.
SHARDS = config["execution"]["shards"]


wildcard_constraints:
    shard=r"\d+",


def shard_folder(folder):
    """The folder of shard `{shard}` of a per-image output folder."""
    return f"{folder}.shard-{{shard}}-of-{SHARDS}"


def per_image_output(folder):
    """A per-image rule's output: its folder (K = 1) or, with K > 1, its temporary shard folder."""
    if SHARDS == 1:
        return directory(folder)
    return temp(directory(shard_folder(folder)))


def per_image_log(name):
    """`logs/runs/{run}/<name>.log`, one per shard with K > 1."""
    shard = "" if SHARDS == 1 else ".shard-{shard}"
    return f"logs/runs/{{run}}/{name}{shard}.log"


def final_rule(stage):
    """The job writing the folder a per-image stage hands on: the stage itself (K = 1) or its merge."""
    return stage if SHARDS == 1 else f"{stage}_merge"


def stage_folder(stage):
    """The `{run}` pattern of a per-image stage's folder (its rule's output, less the shard suffix)."""
    out = RUN_WILDCARD.sub("{run}", str(getattr(rules, stage).output[0]))
    return out.split(".shard-")[0]


def shard_arg(wildcards, output):
    """`--shard I/K` for a shard job, nothing with K = 1. A function of `output`, so Snakemake counts it as derived and
    the finished folder's recorded params stay the same for every K."""
    return f"--shard {wildcards.shard}/{SHARDS}" if SHARDS > 1 else ""


# quoted: an overlay path with a space must stay one argument
PARAMS_ARGS = " ".join(f"--params {shlex.quote(f)}" for f in PARAMS_FILES)

# Jobs run `ppcseg` from the interpreter that runs Snakemake, activated or not.


envvars:
    "PATH",


os.environ["PATH"] = (
    os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
)

ROOT = config["data"]["root"]
METHOD = config["cam"]["method"]
SYNTHETIC = config["data"]["source"] == "synthetic"
SALIENCY = f"{ROOT}/SaliencyMaps" if SYNTHETIC else "data/saliency"
# The package sources the stages run (ppcseg is installed editable from here).
SRC = Path("src")


def params_args(wildcards, input):
    """The `--params` flags of every stage command.

    A function of `input`, so Snakemake counts it as derived and leaves it out of its params re-run trigger: adding
    an overlay then re-runs only the jobs whose `settings` values change, not every job down to the downloads.
    """
    return PARAMS_ARGS


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


def code(stage):
    """Every package file the stage runs (its module's import closure) as inputs: editing one re-runs the stage
    (DVC lists them as deps)."""
    return list(stage_deps.code_files(stage, SRC))


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
