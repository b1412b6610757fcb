# Results table, metrics for `dvc metrics`, and the self-contained HTML report.

# The metrics files of one run, in the table's order: seeds, masks, segmentation (single scale, then MS + flip + CRF).
METRIC_ROWS = [
    rules.eval_seeds.output.metrics,
    rules.eval_masks.output[0],
    *expand(
        rules.eval_seg.output[0], protocol=["single", "msf-crf"], allow_missing=True
    ),
]
# The report's figures (overlays, curves) come from the first run of `runs`; its tables show every run.
FIGURES_RUN = RUNS[0]


rule collect_results:
    input:
        **stage_inputs("collect-results", reads_data=False),
        rows=expand(METRIC_ROWS, run=RUNS),
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
CAM_LOSS = (
    [] if RELEASED["cam"] else expand(rules.train_cam.output.loss, run=FIGURES_RUN)
)
AFFINITY_LOSS = (
    expand(rules.train_affinity.output.loss, run=FIGURES_RUN)
    if METHOD == "seam" and not RELEASED["affinity"]
    else []
)


rule report:
    input:
        **stage_inputs("report"),
        csv=rules.collect_results.output.csv,
        cams=finished(rules.infer_cam, run=FIGURES_RUN),
        masks=finished(masks_rule(), run=FIGURES_RUN),
        checkpoint=expand(rules.train_seg.output[0], run=FIGURES_RUN),
        cam_loss=CAM_LOSS,
        seed_curve=expand(rules.eval_seeds.output.curve, run=FIGURES_RUN),
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
