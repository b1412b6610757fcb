"""What the user sees of a finished demo run: `snakemake --report` (workflow description, captions, figures) and
`dvc plots show` (loss curves, seed threshold curve, per-class IoU)."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from ppcseg.workflow.export_dvc import route_plots
from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, DEMO, run, snakemake

pytestmark = pytest.mark.workflow
FIGURES = ["overlays", "per_class_iou", "seed_threshold_curve", "train_affinity_loss", "train_cam_loss"]


def test_snakemake_report_has_the_description_captions_and_figures(demo_run, tmp_path):
    repo, _ = demo_run
    out = tmp_path / "report.html"
    snakemake(repo, *DEMO, "--report", str(out), timeout=HANG_GUARD_S)
    page = out.read_text()

    # workflow/report/workflow.rst, rendered with this run's config.
    assert "pixel-to-prototype contrast" in page and "SEAM + PPC" in page and "generated" in page
    # One caption per reported output, rendered from workflow/report/*.rst (Jinja and reStructuredText).
    for caption in [
        "The results table",  # voc_miou.rst
        'for <tt class=\\"docutils literal\\">dvc metrics show</tt>',  # metrics_json.rst
        "self-contained HTML report",  # report_html.rst
        "Loss of CAM training per logged step",  # train_cam_loss.rst
        "Loss of AffinityNet training",  # train_affinity_loss.rst
        "Seed mIoU on train for every background threshold",  # seed_threshold_curve.rst
        "Overlays for the first",  # figures.rst, one branch per figure
        "Per-class IoU (%) of every evaluated stage",
        "Total loss of CAM training against the step",
        "AffinityNet training loss against the step",
        "the peak is the ground-truth-tuned",
    ]:
        assert caption in page, caption
    assert "Figure <tt" not in page  # no figure fell through to the generic caption
    assert "System Message" not in page  # docutils errors would be rendered into a caption
    # voc_miou.csv is shown as a table in its caption: a header cell per class and a row per stage.
    assert '<th class=\\"head\\">tvmonitor</th>' in page and "<td>segmentation-msf-crf</td>" in page

    # Every figure, in its category, embedded as a PNG that decodes; the HTML report itself embedded too.
    for name in FIGURES:
        assert f'"results/figures/{name}.png"' in page, name
    assert '"mime_type": "text/html"' in page
    pngs = re.findall(r'"data_uri": "data:image/png;[^"]*?base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) == len(FIGURES)
    for data in pngs:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.size[0] > 300 and image.size[1] > 200
    for category in ("Results", "Figures", "Curves"):
        assert f"showCategory('{category}')" in page


def test_dvc_plots_show_renders_the_curves_and_per_class_iou(demo_run):
    repo, _ = demo_run
    shown = json.loads(run([str(BIN / "dvc"), "plots", "show", "--json"], repo).stdout)
    assert not shown.get("errors"), shown.get("errors")
    plots = shown["data"]
    expected = {
        "results/runs/0/train_cam_loss.csv": ("step", "total"),
        "results/runs/0/train_affinity_loss.csv": ("step", "loss"),
        "results/runs/0/seed_threshold_curve.csv": ("threshold", "mIoU"),
    }
    for plot_id, (x, y) in expected.items():
        (entry,) = plots[plot_id]
        assert entry["type"] == "vega"
        spec = entry["content"]
        values = spec["data"]["values"]
        assert len(values) >= 10 and all(float(v[y]) == float(v[y]) for v in values)  # numbers, no NaN
        assert spec["encoding"]["x"]["field"] == x
    (per_class,) = plots["per_class_iou"]
    spec = per_class["content"]
    values = spec["data"]["values"]
    assert {v["field"] for v in values} == {"seed", "mask", "segmentation", "segmentation-msf-crf"}
    assert len({v["class"] for v in values}) == 21
    # The custom template: classes down, IoU across on a fixed 0-100 axis, one colour per stage.
    assert spec["encoding"]["y"]["field"] == "class" and spec["encoding"]["x"]["scale"]["domain"] == [0, 100]
    assert spec["encoding"]["color"]["field"] == "series"


def test_plots_follow_the_route():
    seam = [
        "results/runs/0/train_cam_loss.csv",
        "results/runs/0/train_affinity_loss.csv",
        "results/runs/0/seed_threshold_curve.csv",
    ]
    all_outputs = seam + ["results/figures"]
    assert [next(iter(p)) for p in route_plots(all_outputs)] == [*seam, "per_class_iou"]
    eps = route_plots([o for o in all_outputs if "affinity" not in o])
    assert [next(iter(p)) for p in eps] == [
        "results/runs/0/train_cam_loss.csv",
        "results/runs/0/seed_threshold_curve.csv",
        "per_class_iou",
    ]
    assert [next(iter(p)) for p in route_plots(seam)] == seam  # no report stage, no per-class plot
    # Two runs: each curve once per run, titled with its run; the per-class plot once (the report's figures run).
    two = route_plots([*all_outputs, *(o.replace("/0/", "/1/") for o in seam)])
    assert [next(iter(p)) for p in two] == [
        "results/runs/0/train_cam_loss.csv",
        "results/runs/1/train_cam_loss.csv",
        "results/runs/0/train_affinity_loss.csv",
        "results/runs/1/train_affinity_loss.csv",
        "results/runs/0/seed_threshold_curve.csv",
        "results/runs/1/seed_threshold_curve.csv",
        "per_class_iou",
    ]
    assert two[1]["results/runs/1/train_cam_loss.csv"]["title"] == "CAM training loss (run 1)"
