# PPC weakly supervised semantic segmentation pipeline. The wiring lives in workflow/rules/*.smk, upstream first; every
# stage is a `ppcseg` subcommand. Paper settings: params.yaml; demo: --configfile config/demo.yaml.

from snakemake.utils import min_version

from ppcseg.workflow import internals

# The tested releases (pyproject.toml); the Snakemake internals the workflow uses are listed in internals.py.
min_version(internals.SNAKEMAKE_RANGE[0])
if refusal := internals.untested_version(
    "Snakemake", snakemake.__version__, internals.SNAKEMAKE_RANGE
):
    raise WorkflowError(refusal)


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/cam.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/released.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/report.smk"


# Every stage's output of every branch (the Snakemake workflow catalog's final-output pattern): Snakemake rebuilds a
# missing target, so an intermediate that was deleted, or removed by a stopped job, is made again together with
# what depends on it. Downloads are left out: deleting an archive after preparation re-runs nothing.
rule all:
    default_target: True
    input:
        ROOT,
        MANIFEST,
        # the saliency maps prepared from their download (the demo's come with its dataset)
        [SALIENCY]
        if not SYNTHETIC and any(is_eps({"experiment": e}) for e in EXPERIMENT_CONFIGS)
        else [],
        rules.pretrain_backbone.output if SYNTHETIC else [],
        [
            in_branch(pattern, experiment, run)
            for experiment, run in branches()
            for pattern in branch_outputs(EXPERIMENT_CONFIGS[experiment])
        ],
        rules.collect_results.output,
        rules.compare_experiments.output if COMPARE else [],
        rules.report.output,
