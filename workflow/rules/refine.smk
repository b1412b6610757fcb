# Pseudo-masks: AffinityNet random walk (SEAM route) or dense CRF on CAM + saliency (EPS route), and their evaluation.


rule affinity_labels:
    input:
        **stage_inputs("affinity-labels"),
        cams=finished(rules.infer_cam),
    output:
        per_image_output(f"work/{BRANCH}/affinity/labels"),
    log:
        per_image_log("affinity_labels"),
    conda:
        "../../envs/ppcseg.yaml"
    threads: 8
    resources:
        mem_mb=scaled(16000, 2000),
        runtime=scaled(600, 30),
    params:
        params_files=params_args,
        shard=shard_arg,
        settings=branch_settings("affinity-labels"),
    shell:
        "ppcseg affinity-labels {params.params_files} --threads {threads} --data {input.data:q} --cams {input.cams:q} "
        "--out {output:q} {params.shard} --log-file {log:q}"


rule train_affinity:
    input:
        **stage_inputs("train-affinity"),
        labels=finished(rules.affinity_labels),
        weights=branch_weights("cam"),
    output:
        checkpoint=f"work/{BRANCH}/affinity/checkpoint.pt",
        loss=report(
            f"results/{BRANCH}/train_affinity_loss.csv",
            caption="../report/train_affinity_loss.rst",
            category="Curves",
        ),
    log:
        f"logs/{BRANCH}/train_affinity.log",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=scaled(32000, 2000),
        runtime=scaled(1440, 30),
    params:
        params_files=params_args,
        settings=branch_settings("train-affinity"),
        weights=weights_flag,
        state=lambda wildcards, output: Path(output.checkpoint).parent / "state",
    shell:
        "ppcseg train-affinity {params.params_files} --threads {threads} --data {input.data:q} --labels {input.labels:q} "
        "{params.weights} --seed {wildcards.run} --state-dir {params.state:q} --out {output.checkpoint:q} "
        "--out-loss {output.loss:q} --log-file {log:q}"


rule random_walk:
    input:
        **stage_inputs("random-walk"),
        cams=finished(rules.infer_cam),
        checkpoint=rules.train_affinity.output.checkpoint,
    output:
        per_image_output(f"work/{BRANCH}/masks/random_walk"),
    log:
        per_image_log("random_walk"),
    conda:
        "../../envs/ppcseg.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=scaled(16000, 2000),
        runtime=scaled(600, 30),
    params:
        params_files=params_args,
        shard=shard_arg,
        settings=branch_settings("random-walk"),
    shell:
        "ppcseg random-walk {params.params_files} --threads {threads} --data {input.data:q} --cams {input.cams:q} "
        "--checkpoint {input.checkpoint:q} --out {output:q} {params.shard} --log-file {log:q}"


rule crf_masks:
    input:
        **stage_inputs("crf-masks"),
        cams=finished(rules.infer_cam),
    output:
        per_image_output(f"work/{BRANCH}/masks/crf"),
    log:
        per_image_log("crf_masks"),
    conda:
        "../../envs/ppcseg.yaml"
    threads: 8
    resources:
        mem_mb=scaled(16000, 2000),
        runtime=scaled(600, 30),
    params:
        params_files=params_args,
        shard=shard_arg,
        settings=branch_settings("crf-masks"),
    shell:
        "ppcseg crf-masks {params.params_files} --threads {threads} --data {input.data:q} --cams {input.cams:q} "
        "--out {output:q} {params.shard} --log-file {log:q}"


rule eval_masks:
    input:
        **stage_inputs("eval-masks"),
        masks=finished_masks(),
    output:
        metrics=f"results/{BRANCH}/metrics/mask.json",
        confusion=f"work/{BRANCH}/confusion/mask.npz",
    log:
        f"logs/{BRANCH}/eval_masks.log",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 1
    resources:
        mem_mb=scaled(8000, 1000),
        runtime=scaled(60, 10),
    params:
        params_files=params_args,
        settings=branch_settings("eval-masks"),
    shell:
        "ppcseg eval-masks {params.params_files} --data {input.data:q} --masks {input.masks:q} "
        "--out-metrics {output.metrics:q} --out-confusion {output.confusion:q} --log-file {log:q}"
