# With execution.shards K > 1: the merge job of each per-image rule (the rule itself then writes shard folders, see
# common.smk).


if SHARDS > 1:
    for _stage in PER_IMAGE_STAGES:

        rule:
            name:
                f"{_stage}_merge"
            # The stage's inputs too: the merge job stands for the stage (same params, same rebuild flag), so that a
            # change that re-runs the stage re-runs it, and through it the shard jobs, whose folders are gone.
            input:
                getattr(rules, _stage).input,
                shards=expand(
                    shard_folder(stage_folder(_stage)),
                    shard=range(1, SHARDS + 1),
                    allow_missing=True,
                ),
            output:
                directory(stage_folder(_stage)),
            log:
                f"logs/runs/{{run}}/{_stage}_merge.log",
            localrule: True
            conda:
                "../../envs/ppcseg.yaml"
            threads: 1
            params:
                params_files=params_args,
                settings=settings(_stage.replace("_", "-")),
            shell:
                "ppcseg merge-shards {params.params_files} --out {output:q} {input.shards:q} --log-file {log:q}"
