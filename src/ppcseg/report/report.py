"""report: results/report.html, self-contained (images inlined, no network), for people who would rather look.

The voc_miou.csv table beside the paper's numbers, per-class IoU bars, the training and threshold curves, overlays of
CAMs, seeds, pseudo-masks and predictions for a fixed handful of images, and the params and code version.

With --out-figures DIR the same figures are also written as DIR/<name>.png (for `snakemake --report`, which shows each
one with its caption from workflow/report/), and the per-class IoUs as DIR/per_class_iou.csv (one row per class, one
column per evaluated stage, for `dvc plots`).

With --comparison results/comparison.csv (compare-experiments) the page also compares the experiments: a table, the
figure `comparison` (report/comparison.py) and the per-class differences. Without it the page is as before.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ppcseg.data.cams import load_cams, seed_prediction
from ppcseg.data.voc import CLASSES, PALETTE, load_image, load_mask, read_class_labels, read_ids, voc_dirs
from ppcseg.report.comparison import comparison_figure, comparison_section, read_comparison
from ppcseg.report.figures import data_uri, figure_png
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_dir, write_text

# The page lists every result param (and shows the route, the demo note, seed overlays and threshold marks from them).
PARAMS_KEYS: tuple[str, ...] = (
    "runs", "data", "pretrain", "cam", "infer_cam", "seeds", "affinity", "random_walk", "crf_masks", "masks",
    "segmentation", "report",
)  # fmt: skip

# Published numbers (mIoU %, PASCAL VOC 2012), from the PPC abstract and README.
PAPER = {
    "seam": {"seed": 61.5, "mask": 69.2, "segmentation-msf-crf": 67.7},
    "eps": {"seed": 70.5, "segmentation-msf-crf": 72.6},
}
BASELINE = {"seam": {"seed": 55.4, "mask": 63.61}, "eps": {}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root")
    parser.add_argument("--table", required=True, help="results table written by collect-results (voc_miou.csv)")
    parser.add_argument("--cams", required=True, help="CAM folder (infer-cam output)")
    parser.add_argument("--masks", required=True, help="pseudo-mask folder")
    parser.add_argument("--checkpoint", required=True, help="segmentation checkpoint, for prediction overlays")
    parser.add_argument("--cam-loss", help="CAM training loss curve (train-cam --out-loss; none for a released model)")
    parser.add_argument("--seed-curve", required=True, help="seed threshold curve (eval-seeds --out-curve)")
    parser.add_argument("--affinity-loss", help="AffinityNet loss curve (train-affinity --out-loss; SEAM route)")
    parser.add_argument("--out", required=True, help="output HTML file")
    parser.add_argument("--out-figures", help="also write every figure as <name>.png (and per_class_iou.csv) here")
    parser.add_argument(
        "--figures-run",
        help="seed of the run the figures show; --cams, --masks, --checkpoint and the curves must be its (default: "
        "the table's first run)",
    )
    parser.add_argument(
        "--figures-experiment",
        help="with experiments (an `experiment` column in --table): the experiment whose rows the tables and figures "
        "show; the comparison section shows every compared pair",
    )
    parser.add_argument("--comparison", help="comparison of experiments (compare-experiments --out) to show too")


# File name (without .png) -> caption, in the order of the report. The affinity curve exists on the SEAM route only.
FIGURES: dict[str, str] = {
    "per_class_iou": "Per-class IoU of every evaluated stage",
    "train_cam_loss": "CAM training loss",
    "train_affinity_loss": "AffinityNet training loss",
    "seed_threshold_curve": "Seed mIoU against the background threshold (GT-tuned sweep)",
    "overlays": "Overlays: CAM, seed, pseudo-mask, prediction, ground truth",
    "comparison": "Method minus baseline per stage: median over runs, paired bootstrap interval over images, min-max "
    "over runs; x: the paper's stated difference",
}
# Shown in their own section, not among the figures of one run.
SECTION_FIGURES = ("comparison",)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def per_class_figure(rows: list[dict[str, str]]) -> bytes:
    """Grouped bars, one group per class and one bar per evaluated stage; x marks a class absent from the split."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(12, 3.6))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(CLASSES))
    any_missing = False
    for i, row in enumerate(rows):
        values = np.array([float(row[c]) if row[c] else np.nan for c in CLASSES])
        bars = ax.bar(x + i * width, np.nan_to_num(values), width, label=f"{row['stage']} ({row['split']})")
        missing = np.isnan(values)
        if missing.any():
            any_missing = True
            colour = bars.patches[0].get_facecolor()
            ax.scatter((x + i * width)[missing], np.full(missing.sum(), 2.0), marker="x", s=12, color=colour)
    handles, labels = ax.get_legend_handles_labels()
    if any_missing:
        handles.append(Line2D([], [], marker="x", color="0.3", linestyle="none", markersize=4))
        labels.append("class absent from the split (no IoU)")
    ax.set_xticks(x + 0.4 - width / 2, CLASSES, rotation=60, ha="right")
    ax.set_xlim(-0.5, len(CLASSES) - 0.1)
    ax.set_ylabel("IoU %")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", linewidth=0.3)
    ax.legend(
        handles, labels, fontsize=8, ncol=len(labels), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False
    )
    ax.set_title("Per-class IoU", pad=22)
    return figure_png(fig)


def curve_figure(
    path: Path, x: str, ys: list[str], title: str, fixed: tuple[str, float] | None = None, mark_max: bool = False
) -> bytes | None:
    """Columns `ys` of a CSV against column `x`; `fixed` draws a labelled vertical line, `mark_max` the best point."""
    import matplotlib.pyplot as plt

    if not path.is_file():
        return None
    rows = _read_csv(path)
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    xs = [float(r[x]) for r in rows]
    for y in ys:
        if y in rows[0]:
            values = [float(r[y]) for r in rows]
            ax.plot(xs, values, label=y, linewidth=1)
            if mark_max:
                best = int(np.argmax(values))
                ax.plot(xs[best], values[best], "o", markersize=4, color="tab:red", label=f"best {xs[best]:g}")
    if fixed is not None:
        ax.axvline(fixed[1], color="grey", linestyle="--", linewidth=1, label=f"{fixed[0]} {fixed[1]:g}")
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure_png(fig)


def colourise(mask: np.ndarray) -> np.ndarray:
    palette = np.asarray(PALETTE, dtype=np.uint8).reshape(-1, 3)
    return palette[mask]


def overlay_figure(
    root: Path, cams_dir: Path, masks_dir: Path, image_ids: list[str], bg_threshold: float, predictions: dict
) -> bytes | None:
    import matplotlib.pyplot as plt

    if not image_ids:
        return None
    columns = [
        "image",
        "CAM (max over classes)",
        f"seed (bg {bg_threshold})",
        "pseudo-mask",
        "prediction",
        "ground truth",
    ]
    labels = read_class_labels(root)
    fig, axes = plt.subplots(len(image_ids), len(columns), figsize=(2.2 * len(columns), 2.2 * len(image_ids)))
    axes = np.atleast_2d(axes)
    for r, image_id in enumerate(image_ids):
        image = load_image(voc_dirs(root)["images"] / f"{image_id}.jpg")
        # the format's own checks: a stale or foreign CAM file fails here, naming it, as in every other consumer
        classes, cams = load_cams(cams_dir, image_id, labels[image_id], image.shape[:2])
        heat = cams.max(axis=0) if len(cams) else np.zeros(image.shape[:2], np.float32)
        seed = seed_prediction(classes, cams, bg_threshold).astype(np.uint8)
        mask_path = masks_dir / f"{image_id}.png"
        pseudo = load_mask(mask_path) if mask_path.is_file() else np.zeros_like(seed)
        gt = load_mask(voc_dirs(root)["masks"] / f"{image_id}.png")
        pred = predictions.get(image_id)
        panels = [
            image,
            None,
            colourise(seed),
            colourise(pseudo),
            colourise(pred) if pred is not None else None,
            colourise(gt),
        ]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.axis("off")
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 1:
                ax.imshow(image)
                ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            elif panel is not None:
                ax.imshow(panel)
            else:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center")
    fig.tight_layout()
    return figure_png(fig)


def predict_overlays(checkpoint: Path, root: Path, image_ids: list[str]) -> dict[str, np.ndarray]:
    """Single-scale predictions of the segmentation network for the overlay images."""
    from ppcseg.segment.checkpoint import load_segmentor
    from ppcseg.segment.inference import InferenceProtocol, device, predict_labels

    model, _ = load_segmentor(checkpoint, device())
    return {
        i: predict_labels(model, load_image(voc_dirs(root)["images"] / f"{i}.jpg"), InferenceProtocol())
        for i in image_ids
    }


def code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        return commit or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def sweep_edge_note(rows: list[dict[str, str]], curve: Path) -> str:
    """A warning when the GT-tuned seed threshold is the last one swept (or the first, above 0): the best one may lie
    outside the sweep, so the GT-tuned mIoU is only a lower bound. Empty when it is inside, or nothing to compare."""
    seed = next((row for row in rows if row["stage"] == "seed"), None)
    if seed is None or not curve.is_file():
        return ""
    settings = dict(item.split("=", 1) for item in seed["settings"].split(";") if "=" in item)
    swept = [float(row["threshold"]) for row in _read_csv(curve)]
    if "gt_tuned_bg_threshold" not in settings or not swept:
        return ""
    best = float(settings["gt_tuned_bg_threshold"])
    if not (np.isclose(best, swept[-1]) or (np.isclose(best, swept[0]) and swept[0] > 0)):
        return ""
    return (
        f"<p class='note' id='sweep-edge'>The GT-tuned seed threshold {best:g} is at the end of the sweep "
        f"({swept[0]:g} to {swept[-1]:g}, <code>seeds.sweep</code>): the best threshold may lie beyond it, so "
        f"gt_tuned_mIoU is a lower bound. Widen <code>seeds.sweep</code> to find it.</p>"
    )


def spread_table(rows: list[dict[str, str]], paper: dict[str, float]) -> str:
    """With two or more runs: per stage, the median mIoU (the one to compare with the paper's medians of three runs),
    the min-max range and each run's mIoU. Empty for one run."""
    runs = [row["run"] for row in rows if row["run"].isdigit()]
    if len(set(runs)) < 2:
        return ""
    by_key: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        by_key.setdefault((row["stage"], row["split"]), {})[row["run"]] = row["mIoU"]
    lines = [
        "<tr><th>stage</th><th>split</th><th>median mIoU</th><th>min &ndash; max</th><th>per run</th><th>paper "
        "(median of 3 runs)</th></tr>"
    ]
    for (stage, split), values in by_key.items():
        each = ", ".join(f"{run}: {value}" for run, value in values.items() if run.isdigit())
        published = paper.get(stage)
        lines.append(
            f"<tr><td>{html.escape(stage)}</td><td>{html.escape(split)}</td><td><b>{values['median']}</b></td>"
            f"<td>{values['min']} &ndash; {values['max']}</td><td>{html.escape(each)}</td>"
            f"<td>{published if published is not None else '&ndash;'}</td></tr>"
        )
    return (
        f"<h2>Spread over {len(set(runs))} runs</h2>\n<div class='scroll'><table id='spread'>{''.join(lines)}</table>"
        "</div>"
    )


def render(
    params: dict[str, Any],
    rows: list[dict[str, str]],
    figures: dict[str, bytes | None],
    seed_note: str,
    figures_run: str,
    comparison: list[dict[str, str]] | None = None,
) -> str:
    """The HTML page; `figures` maps a FIGURES name to its PNG (None: not produced on this route or run), all drawn
    from run `figures_run` but the SECTION_FIGURES, `seed_note` is HTML shown under the table (sweep_edge_note),
    `comparison` the rows of a comparison.csv (its section is left out without them)."""
    method = params["cam"]["method"]
    route = f"{method.upper()}{' + PPC' if params['cam']['ppc'] else ''}"
    paper = PAPER[method] if params["cam"]["ppc"] else BASELINE[method]
    # The params that shape the results; execution settings (execution.shards) change none and are not listed.
    result_params = {key: params[key] for key in PARAMS_KEYS if key in params}
    table = [
        "<tr><th>stage</th><th>run</th><th>split</th><th>mIoU</th><th>paper</th><th>images</th><th>settings</th></tr>"
    ]
    for row in rows:
        published = paper.get(row["stage"])
        settings = "<br>".join(html.escape(item) for item in row["settings"].split(";"))
        table.append(
            f"<tr><td>{html.escape(row['stage'])}</td><td>{html.escape(row['run'])}</td>"
            f"<td>{html.escape(row['split'])}</td><td><b>{html.escape(row['mIoU'])}</b></td>"
            f"<td>{published if published is not None else '&ndash;'}</td>"
            f"<td>{html.escape(row['n_images'])}</td><td><code>{settings}</code></td></tr>"
        )
    runs = list(dict.fromkeys(row["run"] for row in rows if row["run"].isdigit()))
    figure_html = "\n".join(
        figure_tag(name, png) for name, png in figures.items() if png and name not in SECTION_FIGURES
    )
    comparison_html = ""
    if comparison:
        comparison_html = comparison_section(comparison, figure_tag("comparison", figures["comparison"]))
    synthetic = params["data"]["source"] == "synthetic"
    note = (
        "<p class='note'>Demo run on the generated dataset: the paper's numbers are for PASCAL VOC 2012 and are not "
        "comparable.</p>"
        if synthetic
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ppcseg run report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #bbb; padding: 4px 8px; text-align: left; font-size: 14px; vertical-align: top; }}
td code {{ overflow-wrap: anywhere; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
figcaption {{ font-size: 13px; color: #555; }}
img {{ max-width: 100%; }}
.note {{ background: #fff3cd; padding: 0.5em; }}
pre {{ background: #f5f5f5; padding: 1em; font-size: 12px; max-height: 30em; overflow: auto; }}
</style></head><body>
<h1>ppcseg run report: {html.escape(route)}</h1>
<p>Code version <code>{html.escape(code_version())}</code>. mIoU in %, 21 classes, ground-truth 255 ignored; the seed
row uses the fixed background threshold, the GT-tuned sweep is in its settings.</p>
{note}
<h2>Results (results/voc_miou.csv) beside the paper</h2>
<div class="scroll"><table id="results">{"".join(table)}</table></div>
{seed_note}
{spread_table(rows, paper)}{comparison_html}
<h2>Figures</h2>
<p>The figures show run {html.escape(figures_run)} (runs: {html.escape(", ".join(runs))}).</p>
{figure_html}
<h2>Parameters</h2>
<pre>{html.escape(yaml.safe_dump(result_params, sort_keys=False))}</pre>
</body></html>
"""


def figure_tag(name: str, png: bytes) -> str:
    return (
        f"<figure id='fig-{name}'><img alt='{html.escape(FIGURES[name])}' src='{data_uri(png)}'>"
        f"<figcaption>{html.escape(FIGURES[name])}</figcaption></figure>"
    )


def per_class_table(rows: list[dict[str, str]]) -> str:
    """CSV with one row per class and one IoU column per evaluated stage (empty: class absent), for `dvc plots`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", *(row["stage"] for row in rows)])
    for name in CLASSES:
        writer.writerow([name, *(row[name] for row in rows)])
    return buffer.getvalue()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_figures(out_dir: str | Path, figures: dict[str, bytes | None], rows: list[dict[str, str]]) -> None:
    """Every produced figure as <name>.png and the per-class table, replacing the folder as a whole."""
    with atomic_dir(out_dir) as tmp:
        tmp.chmod(0o777 & ~_umask())  # the temporary folder is private; the figures are for everyone who may read
        for name, png in figures.items():
            if png:
                (tmp / f"{name}.png").write_bytes(png)
        (tmp / "per_class_iou.csv").write_text(per_class_table(rows))


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    root = Path(args.data)
    rows = _read_csv(Path(args.table))
    if args.figures_experiment is not None:
        rows = [row for row in rows if row.get("experiment") == args.figures_experiment]
        if not rows:
            raise InputError(f"{args.table}: no rows of experiment {args.figures_experiment} (--figures-experiment)")
    figures_run = args.figures_run or next((row["run"] for row in rows if row["run"].isdigit()), None)
    run_rows = [row for row in rows if row["run"] == figures_run]
    if not run_rows:
        raise InputError(f"{args.table}: no rows of run {figures_run} (--figures-run)")
    comparison = None
    if args.comparison:  # read before the long work, so that a bad file fails at once
        comparison = read_comparison(args.comparison)
    labels = read_class_labels(root)
    count = params["report"]["overlay_images"]
    train_ids = [i for i in read_ids(root, params["seeds"]["split"]) if labels.get(i)][:count]
    predictions = predict_overlays(Path(args.checkpoint), root, train_ids) if count else {}
    figures = {
        "per_class_iou": per_class_figure(run_rows),
        "train_cam_loss": (
            curve_figure(Path(args.cam_loss), "step", ["total"], "CAM training loss") if args.cam_loss else None
        ),
        "train_affinity_loss": (
            curve_figure(Path(args.affinity_loss), "step", ["loss"], "AffinityNet training loss")
            if args.affinity_loss
            else None
        ),
        "seed_threshold_curve": curve_figure(
            Path(args.seed_curve),
            "threshold",
            ["mIoU"],
            "Seed mIoU vs background threshold",
            fixed=("fixed", params["seeds"]["bg_threshold"]),
            mark_max=True,
        ),
        "overlays": overlay_figure(
            root, Path(args.cams), Path(args.masks), train_ids, params["seeds"]["bg_threshold"], predictions
        ),
    }
    if comparison:
        figures["comparison"] = comparison_figure(comparison)
    if args.out_figures:
        write_figures(args.out_figures, figures, run_rows)
    seed_note = sweep_edge_note(run_rows, Path(args.seed_curve))
    write_text(args.out, render(params, rows, figures, seed_note, figures_run, comparison))
    os.chmod(args.out, 0o666 & ~_umask())  # written through a private temporary file; readable like any other output
