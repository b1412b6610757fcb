# CAM training (SEAM or EPS, with or without PPC), multi-scale CAM inference, seed evaluation; on the demo, the
# backbone pretraining that stands in for ImageNet weights.


if SYNTHETIC:

    rule pretrain_backbone:
        input:
            **stage_inputs("pretrain-backbone"),
        output:
            "data/weights/tiny.pth",
        log:
            "logs/pretrain_backbone.log",
        conda:
            "../../envs/ppcseg.yaml"
        threads: 2
        resources:
            gpu=1,
            mem_mb=2000,
            runtime=30,
        params:
            params_files=params_args,
            settings=settings("pretrain-backbone"),
        shell:
            "ppcseg pretrain-backbone {params.params_files} --threads {threads} --data {input.data:q} --out {output:q} "
            "--log-file {log:q}"


rule train_cam:
    input:
        **stage_inputs("train-cam"),
        weights=branch_weights("cam"),
        saliency=lambda wildcards: (
            [SALIENCY] if is_eps(wildcards) and not SYNTHETIC else []
        ),
    output:
        checkpoint=f"work/{BRANCH}/cam/checkpoint.pt",
        loss=report(
            f"results/{BRANCH}/train_cam_loss.csv",
            caption="../report/train_cam_loss.rst",
            category="Curves",
        ),
    log:
        f"logs/{BRANCH}/train_cam.log",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=scaled(32000, 2000),
        runtime=scaled(1440, 30),
    params:
        params_files=params_args,
        settings=branch_settings("train-cam"),
        weights=weights_flag,
        saliency=lambda wildcards: (
            f"--saliency {shlex.quote(SALIENCY)}" if is_eps(wildcards) else ""
        ),
        state=lambda wildcards, output: Path(output.checkpoint).parent / "state",
        launch=lambda wildcards, resources: launcher(resources),
    shell:
        "{params.launch} train-cam {params.params_files} --threads {threads} --data {input.data:q} {params.weights} "
        "{params.saliency} --seed {wildcards.run} --state-dir {params.state:q} --out {output.checkpoint:q} "
        "--out-loss {output.loss:q} --log-file {log:q}"


rule infer_cam:
    input:
        **stage_inputs("infer-cam"),
        checkpoint=rules.train_cam.output.checkpoint,
    output:
        per_image_output(f"work/{BRANCH}/cam/cams"),
    log:
        per_image_log("infer_cam"),
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
        settings=branch_settings("infer-cam"),
    shell:
        "ppcseg infer-cam {params.params_files} --threads {threads} --data {input.data:q} "
        "--checkpoint {input.checkpoint:q} --out {output:q} {params.shard} --log-file {log:q}"


rule eval_seeds:
    input:
        **stage_inputs("eval-seeds"),
        cams=finished(rules.infer_cam),
    output:
        metrics=f"results/{BRANCH}/metrics/seed.json",
        curve=report(
            f"results/{BRANCH}/seed_threshold_curve.csv",
            caption="../report/seed_threshold_curve.rst",
            category="Curves",
        ),
        confusion=f"work/{BRANCH}/confusion/seed.npz",
    log:
        f"logs/{BRANCH}/eval_seeds.log",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 1
    resources:
        mem_mb=scaled(8000, 1000),
        runtime=scaled(120, 10),
    params:
        params_files=params_args,
        settings=branch_settings("eval-seeds"),
    shell:
        "ppcseg eval-seeds {params.params_files} --data {input.data:q} --cams {input.cams:q} "
        "--out-metrics {output.metrics:q} --out-curve {output.curve:q} --out-confusion {output.confusion:q} "
        "--log-file {log:q}"
