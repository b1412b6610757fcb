"""The report's comparison of experiments: results/comparison.csv (compare-experiments) as tables and a figure.

The figure has one marker per pair and stage: the median over runs of the method - baseline mIoU difference, its bar
the paired bootstrap interval over images, a thin bar the min-max range over runs, and an x the paper's stated
difference where the paper gives one.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

import numpy as np

from ppcseg.data.voc import CLASSES
from ppcseg.evaluation.results import COMPARISON_COLUMNS as CSV_COLUMNS
from ppcseg.report.figures import figure_png
from ppcseg.utils.errors import InputError


def read_comparison(path: str | Path) -> list[dict[str, str]]:
    """The rows of a comparison.csv; InputError naming the file when it is missing or lacks columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: comparison table not found (run compare-experiments)")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: not a comparison table, columns {missing[:3]} missing")
        rows = list(reader)
    if not rows:
        raise InputError(f"{path}: comparison table has no rows")
    return rows


def _value(cell: str) -> float:
    return float(cell) if cell else float("nan")


def _pair(row: dict[str, str]) -> str:
    return f"{row['method']} \u2212 {row['baseline']}"


def comparison_figure(rows: list[dict[str, str]]) -> bytes:
    """Difference per stage (x) and pair (offset markers): median over runs, bootstrap interval, min-max, paper."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    stages = list(dict.fromkeys(f"{r['stage']}\n({r['split']})" for r in rows))
    pairs = list(dict.fromkeys(_pair(r) for r in rows))
    width = 0.7 / max(len(pairs), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(stages)), 3.6))
    ax.axhline(0, color="0.5", linewidth=0.8)
    any_paper = False
    for p, pair in enumerate(pairs):
        colour = f"C{p}"
        for row in (r for r in rows if _pair(r) == pair):
            x = stages.index(f"{row['stage']}\n({row['split']})") - 0.35 + width * (p + 0.5)
            median, low, high = _value(row["diff_median"]), _value(row["ci_low"]), _value(row["ci_high"])
            # Beside the interval, not under it: the two often overlap.
            spread = [_value(row["diff_min"]), _value(row["diff_max"])]
            ax.plot([x + width / 4] * 2, spread, color=colour, linewidth=0.8, marker="_", alpha=0.7)
            ax.errorbar(x, median, yerr=[[median - low], [high - median]], fmt="o", color=colour, capsize=4)
            if row["paper_diff"]:
                any_paper = True
                ax.plot(x, float(row["paper_diff"]), marker="x", color="tab:red", markersize=9, mew=2)
    handles = [Line2D([], [], marker="o", color=f"C{p}", label=pair) for p, pair in enumerate(pairs)]
    if any_paper:
        handles.append(Line2D([], [], marker="x", color="tab:red", linestyle="none", mew=2, label="paper"))
    ax.set_xticks(np.arange(len(stages)), stages, fontsize=8)
    ax.set_xlim(-0.5, len(stages) - 0.5)
    ax.set_ylabel("mIoU difference (points)")
    ax.grid(axis="y", linewidth=0.3)
    ax.legend(
        handles=handles, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), frameon=False
    )
    ax.set_title(
        "Method \u2212 baseline: median over runs, bootstrap interval (bar), min\u2013max over runs (thin)",
        pad=22,
        fontsize=9,
    )
    return figure_png(fig)


def _signed(cell: str) -> str:
    return f"{float(cell):+.2f}" if cell else "&ndash;"


def comparison_section(rows: list[dict[str, str]], figure_html: str) -> str:
    """HTML: the table, the figure, and the per-class differences."""
    confidence = next((s.split("=", 1)[1] for s in rows[0]["settings"].split(";") if s.startswith("confidence=")), "")
    level = f"{100 * float(confidence):g} %" if confidence else ""
    lines = [
        "<tr><th>method &minus; baseline</th><th>stage</th><th>split</th><th>images</th><th>runs</th>"
        "<th>baseline median</th><th>method median</th><th>difference (median over runs)</th><th>min, max</th>"
        f"<th>{level} bootstrap interval</th><th>paper</th></tr>"
    ]
    for row in rows:
        paper = (
            f"{_signed(row['paper_diff'])} <small>{html.escape(row['paper'])}</small>"
            if row["paper_diff"]
            else "&ndash;"
        )
        lines.append(
            f"<tr><td>{html.escape(_pair(row))}</td><td>{html.escape(row['stage'])}</td>"
            f"<td>{html.escape(row['split'])}</td><td>{html.escape(row['n_images'])}</td>"
            f"<td>{html.escape(row['runs'])}</td><td>{html.escape(row['baseline_median'])}</td>"
            f"<td>{html.escape(row['method_median'])}</td><td><b>{_signed(row['diff_median'])}</b></td>"
            f"<td>{_signed(row['diff_min'])}, {_signed(row['diff_max'])}</td>"
            f"<td>[{_signed(row['ci_low'])}, {_signed(row['ci_high'])}]</td><td>{paper}</td></tr>"
        )
    per_class = ["<tr><th>method &minus; baseline</th><th>stage</th>", *(f"<th>{c}</th>" for c in CLASSES), "</tr>"]
    for row in rows:
        per_class.append(f"<tr><td>{html.escape(_pair(row))}</td><td>{html.escape(row['stage'])}</td>")
        per_class += [f"<td>{_signed(row[f'diff_{c}'])}</td>" for c in CLASSES]
        per_class.append("</tr>")
    return f"""
<h2>Comparison of experiments (results/comparison.csv)</h2>
<p>mIoU differences in points, method minus baseline, runs paired by seed. The interval resamples the evaluated images
(the same images on both sides and in every run) and recomputes each run's mIoU from the summed per-image confusion
matrices ({html.escape(rows[0]["settings"].replace(";", ", "))}): it shows how much the difference depends on which
images were evaluated; the min and max show the spread over seeds.</p>
<div class="scroll"><table id="comparison">{"".join(lines)}</table></div>
{figure_html}
<h3>Per-class IoU differences (median over runs)</h3>
<div class="scroll"><table id="comparison-per-class">{"".join(per_class)}</table></div>
"""
