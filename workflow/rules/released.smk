# The authors' released checkpoints as entry points (README "Start from the released models"). A stage whose
# `<stage>.released` is set is not trained: its official file is downloaded by the download stage (`ppcseg download
# --source <stage>.released`, checksum verified) and converted into the checkpoint its training would have written,
# and everything downstream runs as usual.

# The checkpoint each entry stands in for: the training rule's.
RELEASED_CHECKPOINTS = {
    "cam": rules.train_cam.output.checkpoint,
    "affinity": rules.train_affinity.output.checkpoint,
    "segmentation": rules.train_seg.output[0],
}


for _stage in [s for s, entry in RELEASED.items() if entry]:

    rule:
        name:
            f"download_released_{_stage}"
        input:
            **stage_inputs("download", reads_data=False),
        output:
            f"data/released/{_stage}.pth",
        log:
            f"logs/download_released_{_stage}.log",
        localrule: True
        conda:
            "../../envs/ppcseg.yaml"
        params:
            params_files=params_args,
            source=f"{_stage}.released",
            settings=settings("download", key=f"{_stage}.released"),
        shell:
            "ppcseg download {params.params_files} --source {params.source} --out {output:q} "
            "--lock-file sources.lock.yaml --log-file {log:q}"

    rule:
        name:
            f"convert_released_{_stage}"
        input:
            **stage_inputs("convert-released", reads_data=False),
            file=f"data/released/{_stage}.pth",
        output:
            RELEASED_CHECKPOINTS[_stage],
        log:
            f"logs/{BRANCH}/convert_released_{_stage}.log",
        conda:
            "../../envs/ppcseg.yaml"
        threads: 1
        resources:
            mem_mb=scaled(4000, 2000),
            runtime=scaled(30, 10),
        params:
            params_files=params_args,
            entry=_stage,
            settings=settings("convert-released", entry=_stage),
        shell:
            "ppcseg convert-released {params.params_files} --entry {params.entry} --file {input.file:q} --out {output:q} "
            "--log-file {log:q}"


# The converted checkpoint stands in for the training rule's (which then has no job: nothing else needs its outputs).
if RELEASED["cam"]:

    ruleorder: convert_released_cam > train_cam


if RELEASED["affinity"]:

    ruleorder: convert_released_affinity > train_affinity


if RELEASED["segmentation"]:

    ruleorder: convert_released_segmentation > train_seg
