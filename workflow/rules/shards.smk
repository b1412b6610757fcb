# With execution.shards K > 1: the merge job of each per-image rule, which writes the folder the next stages read
# from the K shard folders of its rule (common.smk: per_image_output). Changing K re-runs the per-image stages.

# The per-image stages are those whose module declares a PerImageStage; those the workflow runs have a rule of the
# stage's name.
PER_IMAGE_RULES = [
    name.replace("-", "_")
    for name in stage_deps.per_image_stages(SRC)
    if internals.has_rule(rules, name.replace("-", "_"))
]

if SHARDS > 1:
    for _stage in PER_IMAGE_RULES:

        rule:
            name:
                f"{_stage}_merge"
            input:
                **stage_inputs("merge-shards", reads_data=False),
                shards=expand(
                    getattr(rules, _stage).output[0],
                    shard=range(1, SHARDS + 1),
                    allow_missing=True,
                ),
            output:
                directory(folder_of(getattr(rules, _stage))),
            log:
                f"logs/runs/{{run}}/{_stage}_merge.log",
            localrule: True
            conda:
                "../../envs/ppcseg.yaml"
            threads: 1
            params:
                params_files=params_args,
            shell:
                "ppcseg merge-shards {params.params_files} --out {output:q} {input.shards:q} --log-file {log:q}"
