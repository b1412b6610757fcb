# Final segmentation: a DeepLab trained on the pseudo-masks with mmsegmentation, tested on VOC val ground truth.


rule train_seg:
    input:
        **stage_inputs("train-seg"),
        masks=finished_masks(),
        weights=branch_weights("segmentation"),
    output:
        f"work/{BRANCH}/seg/checkpoint.pth",
    log:
        f"logs/{BRANCH}/train_seg.log",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=scaled(32000, 3000),
        runtime=scaled(1440, 30),
    params:
        params_files=params_args,
        settings=branch_settings("train-seg"),
        weights=weights_flag,
        runner=lambda wildcards, output: Path(output[0]).parent / "runner",
        launch=lambda wildcards, resources: launcher(resources),
    shell:
        "{params.launch} train-seg {params.params_files} --threads {threads} --data {input.data:q} --masks {input.masks:q} "
        "{params.weights} --seed {wildcards.run} --work-dir {params.runner:q} --out {output:q} --log-file {log:q}"


rule eval_seg:
    input:
        **stage_inputs("eval-seg"),
        checkpoint=rules.train_seg.output[0],
    output:
        metrics=f"results/{BRANCH}/metrics/segmentation_{{protocol}}.json",
        confusion=f"work/{BRANCH}/confusion/segmentation_{{protocol}}.npz",
    log:
        f"logs/{BRANCH}/eval_seg_{{protocol}}.log",
    wildcard_constraints:
        protocol="single|msf-crf",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=scaled(16000, 3000),
        runtime=scaled(240, 30),
    params:
        params_files=params_args,
        settings=branch_settings("eval-seg"),
    shell:
        "ppcseg eval-seg {params.params_files} --threads {threads} --data {input.data:q} --checkpoint {input.checkpoint:q} "
        "--protocol {wildcards.protocol} --out-metrics {output.metrics:q} --out-confusion {output.confusion:q} "
        "--log-file {log:q}"
