# Final segmentation: a DeepLab trained on the pseudo-masks with mmsegmentation, tested on VOC val ground truth.

SEG_WEIGHTS = backbone_weights(config["segmentation"]["backbone"])


rule train_seg:
    input:
        **stage_inputs("train-seg"),
        masks=finished(masks_rule()),
        weights=SEG_WEIGHTS,
    output:
        "work/runs/{run}/seg/checkpoint.pth",
    log:
        "logs/runs/{run}/train_seg.log",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=scaled(32000, 3000),
        runtime=scaled(1440, 30),
    params:
        params_files=params_args,
        settings=settings("train-seg"),
        weights=opt_flag("--weights", SEG_WEIGHTS),
        launch=lambda wildcards, resources: launcher(resources),
    shell:
        "{params.launch} train-seg {params.params_files} --threads {threads} --data {input.data:q} --masks {input.masks:q} "
        "{params.weights} --seed {wildcards.run} --work-dir work/runs/{wildcards.run}/seg/runner --out {output:q} --log-file {log:q}"


rule eval_seg:
    input:
        **stage_inputs("eval-seg"),
        checkpoint=rules.train_seg.output[0],
    output:
        "results/runs/{run}/metrics/segmentation_{protocol}.json",
    log:
        "logs/runs/{run}/eval_seg_{protocol}.log",
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
        settings=settings("eval-seg"),
    shell:
        "ppcseg eval-seg {params.params_files} --threads {threads} --data {input.data:q} --checkpoint {input.checkpoint:q} "
        "--protocol {wildcards.protocol} --out-metrics {output:q} --log-file {log:q}"
