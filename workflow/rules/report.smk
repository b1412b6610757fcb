# Results table, metrics for `dvc metrics`, and the self-contained HTML report.

METRIC_ROWS = [
    "results/runs/{run}/metrics/seed.json",
    "results/runs/{run}/metrics/mask.json",
    "results/runs/{run}/metrics/segmentation_single.json",
    "results/runs/{run}/metrics/segmentation_msf-crf.json",
]
# The report's figures (overlays, curves) come from the first run of `runs`; its tables show every run.
FIGURES_RUN = RUNS[0]


rule collect_results:
    input:
        code("collect-results"),
        rebuild_flag("collect_results"),
        rows=[row for pattern in METRIC_ROWS for row in per_run(pattern)],
    output:
        csv=report(
            "results/voc_miou.csv",
            caption="../report/voc_miou.rst",
            category="Results",
        ),
        json=report(
            "results/metrics.json",
            caption="../report/metrics_json.rst",
            category="Results",
        ),
    log:
        "logs/collect_results.log",
    localrule: True
    conda:
        "../../envs/ppcseg.yaml"
    params:
        params_files=params_args,
        settings=settings("collect-results"),
        runs=run_args(METRIC_ROWS),
    shell:
        "ppcseg collect-results {params.params_files} {params.runs} --out {output.csv:q} --out-metrics {output.json:q} --log-file {log:q}"


# The loss curves the report draws: none of a released model, the AffinityNet one on the SEAM route only.
CAM_LOSS = [] if RELEASED["cam"] else [f"results/runs/{FIGURES_RUN}/train_cam_loss.csv"]
AFFINITY_LOSS = (
    [f"results/runs/{FIGURES_RUN}/train_affinity_loss.csv"]
    if METHOD == "seam" and not RELEASED["affinity"]
    else []
)


rule report:
    input:
        code("report"),
        rebuild_flag("report"),
        data=ROOT,
        manifest=MANIFEST,
        csv="results/voc_miou.csv",
        cams=f"work/runs/{FIGURES_RUN}/cam/cams",
        masks=MASKS.replace("{run}", FIGURES_RUN),
        checkpoint=f"work/runs/{FIGURES_RUN}/seg/checkpoint.pth",
        cam_loss=CAM_LOSS,
        seed_curve=f"results/runs/{FIGURES_RUN}/seed_threshold_curve.csv",
        affinity_loss=AFFINITY_LOSS,
    output:
        html=report(
            "results/report.html",
            caption="../report/report_html.rst",
            category="Results",
        ),
        figures=report(
            directory("results/figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        "logs/report.log",
    localrule: True
    conda:
        "../../envs/ppcseg.yaml"
    params:
        params_files=params_args,
        settings=settings("report"),
        figures_run=FIGURES_RUN,
        curves=" ".join(
            [
                opt_flag("--cam-loss", CAM_LOSS),
                opt_flag("--affinity-loss", AFFINITY_LOSS),
            ]
        ),
    shell:
        "ppcseg report {params.params_files} --data {input.data:q} --table {input.csv:q} --cams {input.cams:q} "
        "--masks {input.masks:q} --checkpoint {input.checkpoint:q} {params.curves} --seed-curve {input.seed_curve:q} "
        "--figures-run {params.figures_run} --out {output.html:q} --out-figures {output.figures:q} "
        "--log-file {log:q}"
