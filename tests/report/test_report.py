"""report stage: the HTML page and the figure files that `snakemake --report` and `dvc plots` show."""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppcseg.data.cams import save_cams
from ppcseg.data.voc import CLASSES, read_class_labels, read_ids
from ppcseg.evaluation.compare import CSV_COLUMNS
from ppcseg.report import comparison, report
from ppcseg.utils.errors import InputError
from tests.stages import args, default_params
from tests.tinyvoc import make_voc, oracle_cams

STAGES = [("seed", "train"), ("mask", "train"), ("segmentation", "val"), ("segmentation-msf-crf", "val")]


def write_rows(path: Path, absent: str = "bottle") -> list[dict[str, str]]:
    """A voc_miou.csv like collect-results writes; `absent` is empty (no IoU) in the val rows."""
    rows = []
    for index, (stage, split) in enumerate(STAGES):
        row = {"stage": stage, "run": "0", "split": split}
        for c, name in enumerate(CLASSES):
            row[name] = "" if (split == "val" and name == absent) else f"{(10 * index + 3 * c) % 100:.2f}"
        row |= {"mIoU": f"{20 + index:.2f}", "n_images": "4", "settings": "a=1;b=<2>"}
        rows.append(row)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_curve(path: Path, x: str, y: str, n: int = 10) -> None:
    path.write_text(f"{x},{y}\n" + "".join(f"{i},{1.0 / (i + 1):.4f}\n" for i in range(n)))


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


@pytest.fixture()
def run_dir(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    results = tmp_path / "results"
    results.mkdir()
    write_rows(results / "voc_miou.csv")
    write_curve(results / "train_cam_loss.csv", "step", "total")
    write_curve(results / "seed_threshold_curve.csv", "threshold", "mIoU")
    return tmp_path, root, results


def run_report(
    tmp_path, root, results, params, figures=True, figures_run=None, comparison=None, figures_experiment=None
):
    namespace = args(
        data=str(root),
        table=str(results / "voc_miou.csv"),
        cams=str(tmp_path / "cams"),
        masks=str(tmp_path / "masks"),
        checkpoint=str(tmp_path / "none.pth"),
        cam_loss=str(results / "train_cam_loss.csv"),
        seed_curve=str(results / "seed_threshold_curve.csv"),
        affinity_loss=str(affinity) if (affinity := results / "train_affinity_loss.csv").is_file() else None,
        out=str(results / "report.html"),
        figures_run=figures_run,
        figures_experiment=figures_experiment,
        out_figures=str(results / "figures") if figures else None,
        comparison=comparison,
    )
    report.run(namespace, params)
    return (results / "report.html").read_text()


def test_run_writes_the_page_and_every_figure_of_the_route(run_dir):
    tmp_path, root, results = run_dir
    (results / "figures").mkdir()
    (results / "figures" / "stale.png").write_bytes(b"old")
    params = default_params(report={"overlay_images": 0})
    page = run_report(tmp_path, root, results, params)

    figures = results / "figures"
    # No AffinityNet curve (its CSV is absent, as on the EPS route), no overlays (0 images asked); nothing stale left.
    assert sorted(p.name for p in figures.iterdir()) == [
        "per_class_iou.csv",
        "per_class_iou.png",
        "seed_threshold_curve.png",
        "train_cam_loss.png",
    ]
    for png in figures.glob("*.png"):
        assert decode(png.read_bytes()).size[0] > 200
    # The page inlines the same PNGs, with their captions, and the table (settings escaped, one per line).
    inlined = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert sorted(base64.b64decode(s) for s in inlined) == sorted(p.read_bytes() for p in figures.glob("*.png"))
    for name in ("per_class_iou", "train_cam_loss", "seed_threshold_curve"):
        assert f"id='fig-{name}'" in page and report.FIGURES[name] in page
    assert "fig-overlays" not in page and "fig-train_affinity_loss" not in page
    assert '<table id="results">' in page and "a=1<br>b=&lt;2&gt;" in page
    assert "Demo run" not in page  # params.yaml: VOC data, no demo note
    # Readable like any other output, although written through private temporary files.
    umask = os.umask(0o022)
    os.umask(umask)
    if not umask & 0o044:
        assert (results / "report.html").stat().st_mode & 0o044 == 0o044
        assert figures.stat().st_mode & 0o055 == 0o055


def test_without_figures_flag_only_the_page_is_written(run_dir):
    tmp_path, root, results = run_dir
    write_curve(results / "train_affinity_loss.csv", "step", "loss")
    page = run_report(tmp_path, root, results, default_params(report={"overlay_images": 0}), figures=False)
    assert not (results / "figures").exists()
    assert "fig-train_affinity_loss" in page and len(re.findall(r"<figure ", page)) == 4


def test_per_class_table_has_a_row_per_class_and_a_column_per_stage(tmp_path):
    rows = write_rows(tmp_path / "voc_miou.csv", absent="bottle")
    table = list(csv.DictReader(io.StringIO(report.per_class_table(rows))))
    assert [r["class"] for r in table] == list(CLASSES)
    assert list(table[0]) == ["class", *(stage for stage, _ in STAGES)]
    bottle = next(r for r in table if r["class"] == "bottle")
    assert bottle["segmentation"] == "" and bottle["seed"] == rows[0]["bottle"]
    assert table[3]["mask"] == rows[1][CLASSES[3]]


def test_several_runs_show_their_spread_and_the_figures_of_one_run(run_dir):
    """Two runs: the page lists every row, a spread table (median, min - max, each run) and says which run the figures
    show; the per-class figure table holds that run's rows only."""
    tmp_path, root, results = run_dir
    rows = []
    for run, offset in [("0", 0.0), ("1", 5.0), ("median", 2.5), ("min", 0.0), ("max", 5.0)]:
        for index, (stage, split) in enumerate(STAGES):
            row = {"stage": stage, "run": run, "split": split}
            row |= {name: f"{10 + index + offset:.2f}" for name in CLASSES}
            row |= {"mIoU": f"{20 + index + offset:.2f}", "n_images": "4", "settings": "a=1"}
            rows.append(row)
    rows.sort(key=lambda row: [stage for stage, _ in STAGES].index(row["stage"]))
    with open(results / "voc_miou.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    page = run_report(tmp_path, root, results, default_params(report={"overlay_images": 0}), figures_run="1")
    spread = page.split("<table id='spread'>")[1].split("</table>")[0]
    assert (
        "<td>seed</td><td>train</td><td><b>22.50</b></td><td>20.00 &ndash; 25.00</td><td>0: 20.00, 1: 25.00</td>"
        in (spread)
    )
    assert "The figures show run 1 (runs: 0, 1)" in page
    listed = page.split('<table id="results">')[1].split("</table>")[0]
    assert listed.count("<tr><td>seed</td>") == 5  # each run's row and the median, min and max rows
    table = list(csv.DictReader(open(results / "figures" / "per_class_iou.csv")))
    assert table[0]["seed"] == "15.00"  # run 1's background IoU


def test_with_experiments_the_tables_and_figures_show_one_experiment(run_dir):
    """An `experiment` column (params `experiments`): the page shows the rows of --figures-experiment."""
    tmp_path, root, results = run_dir
    rows = []
    for experiment, offset in [("seam", 0.0), ("seam_ppc", 5.0)]:
        for index, (stage, split) in enumerate(STAGES):
            row = {"experiment": experiment, "stage": stage, "run": "0", "split": split}
            row |= {name: f"{10 + index + offset:.2f}" for name in CLASSES}
            rows.append(row | {"mIoU": f"{20 + index + offset:.2f}", "n_images": "4", "settings": "a=1"})
    with open(results / "voc_miou.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    params = default_params(report={"overlay_images": 0})
    page = run_report(tmp_path, root, results, params, figures_experiment="seam_ppc")
    listed = page.split('<table id="results">')[1].split("</table>")[0]
    assert listed.count("<tr><td>seed</td>") == 1 and "25.00" in listed and "20.00" not in listed
    with pytest.raises(InputError, match=r"voc_miou\.csv: no rows of experiment other \(--figures-experiment\)"):
        run_report(tmp_path, root, results, params, figures_experiment="other")


def test_per_class_figure_marks_absent_classes(tmp_path):
    rows = write_rows(tmp_path / "voc_miou.csv")
    with_absent = report.per_class_figure(rows)
    for row in rows:
        row["bottle"] = row["bottle"] or "0.00"
    without = report.per_class_figure(rows)
    assert decode(with_absent).size == decode(without).size
    assert with_absent != without  # the x markers and their legend entry


def test_overlays_have_a_row_per_image(tmp_path):
    root = make_voc(tmp_path / "VOC2012", train=3)
    oracle_cams(root, tmp_path / "cams", split="train")
    labels = read_class_labels(root)
    ids = [i for i in read_ids(root, "train") if labels.get(i)]
    predictions = {ids[0]: np.zeros((48, 48), np.uint8)}
    one = decode(report.overlay_figure(root, tmp_path / "cams", tmp_path / "masks", ids[:1], 0.26, predictions))
    three = decode(report.overlay_figure(root, tmp_path / "cams", tmp_path / "masks", ids[:3], 0.26, predictions))
    assert abs(three.size[0] - one.size[0]) < 0.05 * one.size[0]  # same six columns
    assert three.size[1] > 2.5 * one.size[1]
    assert report.overlay_figure(root, tmp_path / "cams", tmp_path / "masks", [], 0.26, {}) is None


def test_overlays_read_cams_through_the_format_checks(tmp_path):
    """The report reads CAM files as every other stage does: a file for the wrong image or size stops it, named."""
    root = make_voc(tmp_path / "VOC2012", train=3)
    oracle_cams(root, tmp_path / "cams", split="train")
    labels = read_class_labels(root)
    first, second = [i for i in read_ids(root, "train") if labels.get(i)][:2]
    wrong = np.zeros((1 + len(labels[first]), 48, 48), np.float32)  # one class too many
    save_cams(
        tmp_path / "cams" / f"{first}.npz", sorted({*labels[first], 20 if 20 not in labels[first] else 19}), wrong
    )
    with pytest.raises(InputError, match=f"{first}.npz: CAM for class"):
        report.overlay_figure(root, tmp_path / "cams", tmp_path / "masks", [first], 0.26, {})
    save_cams(tmp_path / "cams" / f"{second}.npz", labels[second], np.zeros((len(labels[second]), 40, 48)))
    with pytest.raises(InputError, match=f"{second}.npz: CAM size"):
        report.overlay_figure(root, tmp_path / "cams", tmp_path / "masks", [second], 0.26, {})


def test_seed_curve_marks_the_fixed_and_the_best_threshold(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text("threshold,mIoU\n0.0,10\n0.1,30\n0.2,20\n")
    plain = report.curve_figure(path, "threshold", ["mIoU"], "t")
    marked = report.curve_figure(path, "threshold", ["mIoU"], "t", fixed=("fixed", 0.15), mark_max=True)
    assert plain != marked
    assert report.curve_figure(tmp_path / "missing.csv", "threshold", ["mIoU"], "t") is None


@pytest.mark.parametrize(("best", "flagged"), [(0.59, True), (0.30, False), (0.0, False)])
def test_gt_tuned_threshold_at_the_end_of_the_sweep_is_flagged(run_dir, best, flagged):
    tmp_path, root, results = run_dir
    rows = write_rows(results / "voc_miou.csv")
    rows[0]["settings"] = f"bg_threshold=0.26;gt_tuned_bg_threshold={best};gt_tuned_mIoU=31.74"
    with open(results / "voc_miou.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # The demo's sweep, [0.0, 0.6, 0.01]: 0.59 is its last threshold; 0 cannot be undercut (scores are >= 0).
    (results / "seed_threshold_curve.csv").write_text(
        "threshold,mIoU\n" + "".join(f"{i / 100:.2f},{i / 10:.2f}\n" for i in range(60))
    )
    page = run_report(tmp_path, root, results, default_params(report={"overlay_images": 0}), figures=False)
    assert ("id='sweep-edge'" in page) == flagged
    if flagged:
        assert "threshold 0.59 is at the end of the sweep (0 to 0.59" in page


def write_comparison(path: Path) -> list[dict[str, str]]:
    """A comparison.csv like compare-experiments writes: two pairs, the SEAM pair with the paper's seed figure."""
    rows = []
    for baseline, method, paper in [("seam", "seam_ppc", "6.1"), ("eps", "eps_ppc", "")]:
        for index, (stage, split) in enumerate(STAGES):
            row = dict.fromkeys(CSV_COLUMNS, "")
            row |= {"baseline": baseline, "method": method, "stage": stage, "split": split, "n_images": "4"}
            row |= {"runs": "0 1 2", "baseline_median": "40.00", "method_median": f"{42 + index:.2f}"}
            row |= {"diff_median": f"{2 + index:.2f}", "diff_min": "1.00", "diff_max": "6.00"}
            row |= {"ci_low": "-0.50", "ci_high": f"{4 + index:.2f}", "diff_bottle": "-3.25"}
            row["settings"] = "bootstrap_resamples=1000;bootstrap_seed=0;confidence=0.95"
            if stage == "seed" and paper:
                row |= {"paper_diff": paper, "paper": "55.4 -> 61.5 (SEAM seeds, VOC train)"}
            rows.append(row)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_comparison_adds_its_section_and_figure_and_nothing_else_changes(run_dir):
    tmp_path, root, results = run_dir
    params = default_params(report={"overlay_images": 0})
    plain = run_report(tmp_path, root, results, params)
    plain_figures = {p.name: p.read_bytes() for p in (results / "figures").iterdir()}
    write_comparison(results / "comparison.csv")
    page = run_report(tmp_path, root, results, params, comparison=str(results / "comparison.csv"))
    figures = {p.name: p.read_bytes() for p in (results / "figures").iterdir()}
    assert set(figures) - set(plain_figures) == {"comparison.png"}
    assert all(figures[name] == png for name, png in plain_figures.items())
    section = page.split("<h2>Comparison of experiments")[1].split("<h2>Figures</h2>")[0]
    # The rest of the page as before (but the code version: others may commit between the two reports).
    version = re.compile(r"Code version <code>[^<]*</code>")
    assert version.sub("", page.replace("<h2>Comparison of experiments" + section, "")) == version.sub("", plain)
    table = section.split('<table id="comparison">')[1].split("</table>")[0]
    assert table.count("<tr><td>") == 8
    assert (
        "<tr><td>seam_ppc \u2212 seam</td><td>seed</td><td>train</td><td>4</td><td>0 1 2</td><td>40.00</td>"
        "<td>42.00</td><td><b>+2.00</b></td><td>+1.00, +6.00</td><td>[-0.50, +4.00]</td><td>+6.10 <small>55.4 -&gt; "
        "61.5 (SEAM seeds, VOC train)</small></td></tr>" in table
    )
    assert "<th>95 % bootstrap interval</th>" in table
    assert "id='fig-comparison'" in section and html.escape(report.FIGURES["comparison"]) in section
    inlined = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", section)
    assert [base64.b64decode(s) for s in inlined] == [figures["comparison.png"]]
    per_class = section.split('<table id="comparison-per-class">')[1].split("</table>")[0]
    assert per_class.count("<td>-3.25</td>") == 8 and "<th>bottle</th>" in per_class
    assert "fig-comparison" not in page.split("<h2>Figures</h2>")[1]  # not among the figures of one run


def test_comparison_figure_marks_the_paper(tmp_path):
    rows = write_comparison(tmp_path / "comparison.csv")
    with_paper = comparison.comparison_figure(rows)
    for row in rows:
        row["paper_diff"] = ""
    without = comparison.comparison_figure(rows)
    assert decode(with_paper).size[0] > 400 and with_paper != without


def test_a_bad_comparison_file_stops_the_report_before_writing(run_dir):
    tmp_path, root, results = run_dir
    params = default_params(report={"overlay_images": 0})
    with pytest.raises(InputError, match="comparison.csv: comparison table not found"):
        run_report(tmp_path, root, results, params, comparison=str(results / "comparison.csv"))
    (results / "comparison.csv").write_text("stage,mIoU\nseed,1\n")
    with pytest.raises(InputError, match=r"comparison.csv: not a comparison table, columns \['baseline'"):
        run_report(tmp_path, root, results, params, comparison=str(results / "comparison.csv"))
    assert not (results / "report.html").exists() and not (results / "figures").exists()
