# Results table, metrics for `dvc metrics`, and the self-contained HTML report.

METRIC_ROWS = [
    "results/metrics/seed.json",
    "results/metrics/mask.json",
    "results/metrics/segmentation_single.json",
    "results/metrics/segmentation_msf-crf.json",
]


rule collect_results:
    input:
        code("collect-results"),
        rebuild_flag("collect_results"),
        rows=METRIC_ROWS,
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
    shell:
        "ppcseg collect-results {params.params_files} --rows {input.rows:q} --out {output.csv:q} --out-metrics {output.json:q} --log-file {log:q}"


# The loss curves the report draws: none of a released model, the AffinityNet one on the SEAM route only.
CAM_LOSS = [] if RELEASED["cam"] else ["results/train_cam_loss.csv"]
AFFINITY_LOSS = (
    ["results/train_affinity_loss.csv"]
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
        cams="work/cam/cams",
        masks=MASKS,
        checkpoint="work/seg/checkpoint.pth",
        cam_loss=CAM_LOSS,
        seed_curve="results/seed_threshold_curve.csv",
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
        curves=" ".join(
            [
                opt_flag("--cam-loss", CAM_LOSS),
                opt_flag("--affinity-loss", AFFINITY_LOSS),
            ]
        ),
    shell:
        "ppcseg report {params.params_files} --data {input.data:q} --table {input.csv:q} --cams {input.cams:q} "
        "--masks {input.masks:q} --checkpoint {input.checkpoint:q} {params.curves} --seed-curve {input.seed_curve:q} "
        "--out {output.html:q} --out-figures {output.figures:q} "
        "--log-file {log:q}"
