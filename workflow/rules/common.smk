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
