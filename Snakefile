# PPC weakly supervised semantic segmentation pipeline. The wiring lives in workflow/rules/*.smk; every stage is a
# `ppcseg` subcommand. Paper settings: params.yaml; demo: --configfile config/demo.yaml.


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/released.smk"
include: "workflow/rules/integrity.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/cam.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/shards.smk"


rule all:
    default_target: True
    input:
        "results/voc_miou.csv",
        "results/report.html",


# After every rule is defined: rules whose inputs went missing are made to re-run (workflow/rules/integrity.smk).
check_integrity()
# Folders finished under another execution.shards are kept (workflow/rules/integrity.smk).
adopt_shard_records()
