# Results table, metrics for `dvc metrics`, the comparison of experiments, and the self-contained HTML report.

# The metrics files of one branch, in the order of the table: seeds, masks, segmentation (single scale, then multi-scale
# with flips and CRF), and beside each the per-image confusion matrices that the comparison resamples.
METRIC_ROWS = [
    rules.eval_seeds.output.metrics,
    rules.eval_masks.output.metrics,
    *expand(
        rules.eval_seg.output.metrics,
        protocol=["single", "msf-crf"],
        allow_missing=True,
    ),
]
CONFUSIONS = [
    rules.eval_seeds.output.confusion,
    rules.eval_masks.output.confusion,
    *expand(
        rules.eval_seg.output.confusion,
        protocol=["single", "msf-crf"],
        allow_missing=True,
    ),
]


rule collect_results:
    input:
        **stage_inputs("collect-results", reads_data=False),
        rows=every_branch(*METRIC_ROWS),
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
        runs=branch_args(METRIC_ROWS),
    shell:
        "ppcseg collect-results {params.params_files} {params.runs} --out {output.csv:q} --out-metrics {output.json:q} --log-file {log:q}"


# The paper's route of each experiment, for the paper's difference beside a compared pair.
ROUTES = {
    experiment: f"{params['cam']['method']}{'+ppc' if params['cam']['ppc'] else ''}"
    for experiment, params in EXPERIMENT_CONFIGS.items()
}


if COMPARE:

    rule compare_experiments:
        input:
            **stage_inputs("compare-experiments", reads_data=False),
            rows=every_branch(*METRIC_ROWS),
            confusions=every_branch(*CONFUSIONS),
        output:
            report(
                "results/comparison.csv",
                caption="../report/comparison.rst",
                category="Results",
            ),
        log:
            "logs/compare_experiments.log",
        localrule: True
        conda:
            "../../envs/ppcseg.yaml"
        params:
            params_files=params_args,
            settings=settings("compare-experiments"),
            runs=branch_args(
                [f for pair in zip(METRIC_ROWS, CONFUSIONS) for f in pair], "--run"
            ),
            pairs=" ".join(f"--pair {a} {b}" for a, b in COMPARE),
            routes=" ".join(f"--route {e} {r}" for e, r in ROUTES.items()),
        shell:
            "ppcseg compare-experiments {params.params_files} {params.runs} {params.pairs} {params.routes} --out {output:q} "
            "--log-file {log:q}"


# The report's figures (overlays, curves) come from the first branch; its tables show every branch.
FIGURES_BRANCH = branches()[0]
FIGURES_CONFIG = EXPERIMENT_CONFIGS[FIGURES_BRANCH[0]]
# The loss curves the report draws: none of a released model, the AffinityNet one on the SEAM route only.
CAM_LOSS = (
    [] if RELEASED["cam"] else [in_branch(rules.train_cam.output.loss, *FIGURES_BRANCH)]
)
AFFINITY_LOSS = (
    [in_branch(rules.train_affinity.output.loss, *FIGURES_BRANCH)]
    if FIGURES_CONFIG["cam"]["method"] == "seam" and not RELEASED["affinity"]
    else []
)


rule report:
    input:
        **stage_inputs("report"),
        csv=rules.collect_results.output.csv,
        comparison=rules.compare_experiments.output if COMPARE else [],
        cams=finished(rules.infer_cam, FIGURES_BRANCH),
        masks=finished_masks(FIGURES_BRANCH),
        checkpoint=in_branch(rules.train_seg.output[0], *FIGURES_BRANCH),
        cam_loss=CAM_LOSS,
        seed_curve=in_branch(rules.eval_seeds.output.curve, *FIGURES_BRANCH),
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
        figures=" ".join(
            [
                f"--figures-run {FIGURES_BRANCH[1]}",
                *(
                    [f"--figures-experiment {FIGURES_BRANCH[0]}"]
                    if EXPERIMENTS
                    else []
                ),
            ]
        ),
        curves=" ".join(
            [
                opt_flag("--cam-loss", CAM_LOSS),
                opt_flag("--affinity-loss", AFFINITY_LOSS),
            ]
        ),
        comparison=lambda wildcards, input: opt_flag("--comparison", input.comparison),
    shell:
        "ppcseg report {params.params_files} --data {input.data:q} --table {input.csv:q} --cams {input.cams:q} "
        "--masks {input.masks:q} --checkpoint {input.checkpoint:q} {params.curves} --seed-curve {input.seed_curve:q} "
        "{params.figures} {params.comparison} --out {output.html:q} --out-figures {output.figures:q} "
        "--log-file {log:q}"
