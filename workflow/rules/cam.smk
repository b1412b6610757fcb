# CAM training (SEAM or EPS, with or without PPC), multi-scale CAM inference, seed evaluation.

CAM_WEIGHTS = backbone_weights(config["cam"]["backbone"], config["cam"]["pretrained"])


rule train_cam:
    input:
        **stage_inputs("train-cam"),
        weights=CAM_WEIGHTS,
        saliency=[SALIENCY] if METHOD == "eps" and not SYNTHETIC else [],
    output:
        checkpoint="work/runs/{run}/cam/checkpoint.pt",
        loss=report(
            "results/runs/{run}/train_cam_loss.csv",
            caption="../report/train_cam_loss.rst",
            category="Curves",
        ),
    log:
        "logs/runs/{run}/train_cam.log",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=scaled(32000, 2000),
        runtime=scaled(1440, 30),
    params:
        params_files=params_args,
        settings=settings("train-cam"),
        weights=opt_flag("--weights", CAM_WEIGHTS),
        saliency=f"--saliency {shlex.quote(SALIENCY)}" if METHOD == "eps" else "",
        launch=lambda wildcards, resources: launcher(resources),
    shell:
        "{params.launch} train-cam {params.params_files} --threads {threads} --data {input.data:q} {params.weights} "
        "{params.saliency} --seed {wildcards.run} --state-dir work/runs/{wildcards.run}/cam/state --out {output.checkpoint:q} --out-loss {output.loss:q} --log-file {log:q}"


rule infer_cam:
    input:
        **stage_inputs("infer-cam"),
        checkpoint=rules.train_cam.output.checkpoint,
    output:
        per_image_output("work/runs/{run}/cam/cams"),
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
        settings=settings("infer-cam"),
    shell:
        "ppcseg infer-cam {params.params_files} --threads {threads} --data {input.data:q} "
        "--checkpoint {input.checkpoint:q} --out {output:q} {params.shard} --log-file {log:q}"


rule eval_seeds:
    input:
        **stage_inputs("eval-seeds"),
        cams=finished(rules.infer_cam),
    output:
        metrics="results/runs/{run}/metrics/seed.json",
        curve=report(
            "results/runs/{run}/seed_threshold_curve.csv",
            caption="../report/seed_threshold_curve.rst",
            category="Curves",
        ),
    log:
        "logs/runs/{run}/eval_seeds.log",
    conda:
        "../../envs/ppcseg.yaml"
    threads: 1
    resources:
        mem_mb=scaled(8000, 1000),
        runtime=scaled(120, 10),
    params:
        params_files=params_args,
        settings=settings("eval-seeds"),
    shell:
        "ppcseg eval-seeds {params.params_files} --data {input.data:q} --cams {input.cams:q} "
        "--out-metrics {output.metrics:q} --out-curve {output.curve:q} --log-file {log:q}"
