"""compare-experiments: the table against a hand computation from the per-image confusion matrices, the properties a
paired comparison must have (interval around the estimate, sign flip, zero for an experiment against itself), the
paper's column, the refusals, and the files of the real evaluation stages."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from ppcseg.cli import main
from ppcseg.config import REPO_ROOT
from ppcseg.data.voc import CLASSES, load_mask, read_ids, save_mask, voc_dirs
from ppcseg.evaluation import masks
from ppcseg.evaluation.compare import bootstrap_differences, resample_indices
from ppcseg.evaluation.miou import ConfusionMatrix, write_confusions
from ppcseg.evaluation.results import metrics_row, write_metrics_row
from tests.stages import args, default_params
from tests.tinyvoc import make_voc

RESAMPLES = 200
STAGES = [("seed", "train", False), ("mask", "train", True), ("segmentation-msf-crf", "val", False)]
IDS = {"train": [f"2007_{i:06d}" for i in range(7)], "val": [f"2008_{i:06d}" for i in range(5)]}


def write_stage(folder: Path, stage: str, split: str, unlabelled: bool, noise: float, seed: int) -> list[str]:
    """Random ground truth (classes 0-4, 255 borders) and a prediction that is wrong on a `noise` fraction of the
    pixels (and, for masks, unlabelled on some): the stage's metrics JSON and confusion .npz, as the stages write
    them."""
    rng = np.random.default_rng(seed)
    confusion = ConfusionMatrix(unlabelled=unlabelled, keep_images=True)
    for _ in IDS[split]:
        gt = rng.integers(0, 5, (9, 9)).astype(np.uint8)
        gt[0] = 255
        pred = np.where(rng.random(gt.shape) < noise, rng.integers(0, 6, gt.shape), gt).astype(np.uint8)
        pred[gt == 255] = 0
        if unlabelled:
            pred[rng.random(gt.shape) < 0.05] = 255
        confusion.update(gt, pred)
    metrics, npz = folder / f"{stage}.json", folder / f"{stage}_confusion.npz"
    write_metrics_row(metrics, metrics_row(stage, split, confusion.iou(), len(IDS[split]), {}))
    write_confusions(npz, IDS[split], confusion.images())
    return [str(metrics), str(npz)]


def write_experiment(root: Path, name: str, noise: float, seeds=(0, 1, 2)) -> list[str]:
    """The --run arguments of an experiment (one group per run)."""
    flags = []
    for seed in seeds:
        folder = root / name / str(seed)
        folder.mkdir(parents=True)
        files = []
        for index, (stage, split, unlabelled) in enumerate(STAGES):
            files += write_stage(
                folder, stage, split, unlabelled, noise, seed=1000 * seed + 10 * index + int(noise * 97)
            )
        flags += ["--run", name, str(seed), *files]
    return flags


def compare_cli(tmp_path: Path, runs: list[str], pairs: list[tuple[str, str]], extra: tuple[str, ...] = ()) -> int:
    overlay = tmp_path / "comparison.yaml"
    overlay.write_text(f"comparison:\n  bootstrap_resamples: {RESAMPLES}\n  bootstrap_seed: 3\n")
    command = ["compare-experiments", "--params", str(REPO_ROOT / "params.yaml"), "--params", str(overlay), *runs]
    for baseline, method in pairs:
        command += ["--pair", baseline, method]
    return main([*command, *extra, "--out", str(tmp_path / "comparison.csv")])


def read_rows(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(path) as handle:
        return {(r["baseline"], r["method"], r["stage"]): r for r in csv.DictReader(handle)}


@pytest.fixture()
def study(tmp_path):
    runs = write_experiment(tmp_path / "in", "seam", noise=0.5) + write_experiment(tmp_path / "in", "seam_ppc", 0.3)
    return tmp_path, runs


# The hand computation: every number from the per-image matrices with plain loops and the textbook formulas.
def hand_miou(matrix: np.ndarray) -> float:
    """mIoU (%) of one summed matrix (rows GT, columns prediction, an extra last column: unlabelled pixels)."""
    classes = matrix.shape[0]
    ious = []
    for c in range(classes):
        tp = int(matrix[c, c])
        gt = sum(int(v) for v in matrix[c])  # the unlabelled pixels of class c are misses
        pred = sum(int(matrix[r, c]) for r in range(classes))
        if gt + pred - tp > 0:
            ious.append(tp / (gt + pred - tp))
    return 100 * sum(ious) / len(ious)


def hand_class_iou(matrix: np.ndarray, c: int) -> float | None:
    tp, gt, pred = int(matrix[c, c]), int(matrix[c].sum()), int(matrix[: matrix.shape[0], c].sum())
    return 100 * tp / (gt + pred - tp) if gt + pred - tp > 0 else None


def load_side(root: Path, name: str, stage: str) -> list[np.ndarray]:
    return [np.load(root / name / str(seed) / f"{stage}_confusion.npz")["confusion"] for seed in (0, 1, 2)]


def hand_bootstrap(base: list[np.ndarray], method: list[np.ndarray]) -> list[float]:
    """For each resample: the median over runs of method - baseline mIoU of the resampled images' summed matrices."""
    indices = np.concatenate(list(resample_indices(base[0].shape[0], RESAMPLES, seed=3)))
    values = []
    for drawn in indices:
        per_run = []
        for b, m in zip(base, method, strict=True):
            b_sum = sum(b[i] for i in drawn)
            m_sum = sum(m[i] for i in drawn)
            per_run.append(hand_miou(m_sum) - hand_miou(b_sum))
        values.append(statistics.median(per_run))
    return values


def close(cell: str, value: float) -> bool:
    """A CSV cell (2 decimals) is the value rounded."""
    return abs(float(cell) - value) <= 0.005 + 1e-9


def test_table_equals_the_hand_computation(study):
    tmp_path, runs = study
    assert compare_cli(tmp_path, runs, [("seam", "seam_ppc")]) == 0
    rows = read_rows(tmp_path / "comparison.csv")
    assert [key[2] for key in rows] == [stage for stage, _, _ in STAGES]
    for stage, split, _ in STAGES:
        row = rows[("seam", "seam_ppc", stage)]
        base, method = load_side(tmp_path / "in", "seam", stage), load_side(tmp_path / "in", "seam_ppc", stage)
        base_miou = [hand_miou(m.sum(axis=0)) for m in base]
        method_miou = [hand_miou(m.sum(axis=0)) for m in method]
        diffs = [m - b for b, m in zip(base_miou, method_miou, strict=True)]
        assert row["split"] == split and row["n_images"] == str(len(IDS[split])) and row["runs"] == "0 1 2"
        assert close(row["baseline_median"], statistics.median(base_miou))
        assert close(row["method_median"], statistics.median(method_miou))
        assert close(row["diff_median"], statistics.median(diffs))
        assert close(row["diff_min"], min(diffs)) and close(row["diff_max"], max(diffs))
        # The interval: the 6th smallest and 6th largest of the 200 (floor(200 * 0.05 / 2) = 5 left out each side).
        values = hand_bootstrap(base, method)
        assert bootstrap_differences(base, method, RESAMPLES, seed=3) == pytest.approx(values, abs=1e-9)
        ordered = sorted(values)
        assert close(row["ci_low"], ordered[5]) and close(row["ci_high"], ordered[194])
        assert row["settings"] == "bootstrap_resamples=200;bootstrap_seed=3;confidence=0.95"
        for c, name in enumerate(CLASSES):
            per_run = []
            for b, m in zip(base, method, strict=True):
                b_iou, m_iou = hand_class_iou(b.sum(axis=0), c), hand_class_iou(m.sum(axis=0), c)
                if b_iou is not None and m_iou is not None:
                    per_run.append(m_iou - b_iou)
            cell = row[f"diff_{name}"]
            assert close(cell, statistics.median(per_run)) if per_run else cell == ""
        assert row["diff_background"] != "" and row["diff_bus"] == ""  # classes 0-4 in the data, bus is 6
        # The medians are those of the metrics JSONs (results/voc_miou.csv's median rows).
        reported = [json.loads((tmp_path / "in" / "seam" / str(s) / f"{stage}.json").read_text()) for s in (0, 1, 2)]
        assert row["baseline_median"] == f"{statistics.median(r['mIoU'] for r in reported):.2f}"


def test_interval_contains_the_estimate_and_swapping_the_pair_flips_everything(study):
    tmp_path, runs = study
    assert compare_cli(tmp_path, runs, [("seam", "seam_ppc"), ("seam_ppc", "seam")]) == 0
    rows = read_rows(tmp_path / "comparison.csv")
    for stage, _, _ in STAGES:
        forward, backward = rows[("seam", "seam_ppc", stage)], rows[("seam_ppc", "seam", stage)]
        assert float(forward["ci_low"]) <= float(forward["diff_median"]) <= float(forward["ci_high"])
        assert float(forward["ci_low"]) < float(forward["ci_high"]) and float(forward["diff_median"]) > 0
        assert (backward["baseline_median"], backward["method_median"]) == (
            forward["method_median"],
            forward["baseline_median"],
        )
        for a, b in [("diff_median", "diff_median"), ("diff_min", "diff_max"), ("ci_low", "ci_high")]:
            assert float(backward[a]) == -float(forward[b]) and float(backward[b]) == -float(forward[a])
        for name in CLASSES:
            assert backward[f"diff_{name}"] == (
                "" if not forward[f"diff_{name}"] else f"{-float(forward[f'diff_{name}']) + 0.0:.2f}"
            )


def test_an_experiment_against_itself_gives_zero(study):
    tmp_path, runs = study
    assert compare_cli(tmp_path, runs, [("seam", "seam")]) == 0
    for row in read_rows(tmp_path / "comparison.csv").values():
        assert row["baseline_median"] == row["method_median"]
        cells = [row[k] for k in ("diff_median", "diff_min", "diff_max", "ci_low", "ci_high")]
        assert cells == ["0.00"] * 5
        assert {row[f"diff_{c}"] for c in CLASSES} <= {"0.00", ""}


def test_the_paper_column_for_routes_and_stages_it_publishes(study):
    tmp_path, runs = study
    routes = ("--route", "seam", "seam+ppc", "--route", "seam_ppc", "seam")
    assert compare_cli(tmp_path, runs, [("seam_ppc", "seam"), ("seam", "seam_ppc")], routes) == 0
    rows = read_rows(tmp_path / "comparison.csv")
    # Routes given the other way round: "seam" is SEAM + PPC here, so seam - seam_ppc is the paper's +6.1.
    assert rows[("seam_ppc", "seam", "seed")]["paper_diff"] == "6.1"
    assert rows[("seam_ppc", "seam", "seed")]["paper"] == "55.4 -> 61.5 (SEAM seeds, VOC train)"
    assert rows[("seam", "seam_ppc", "seed")]["paper_diff"] == "-6.1"
    assert rows[("seam_ppc", "seam", "mask")]["paper_diff"] == rows[("seam_ppc", "seam", "mask")]["paper"] == ""
    assert rows[("seam_ppc", "seam", "segmentation-msf-crf")]["paper_diff"] == ""  # EPS's figure, not SEAM's
    assert (
        compare_cli(
            tmp_path, runs, [("seam", "seam_ppc")], ("--route", "seam", "eps", "--route", "seam_ppc", "eps+ppc")
        )
        == 0
    )
    rows = read_rows(tmp_path / "comparison.csv")
    assert rows[("seam", "seam_ppc", "segmentation-msf-crf")]["paper_diff"] == "1.7"
    assert rows[("seam", "seam_ppc", "seed")]["paper_diff"] == ""
    assert compare_cli(tmp_path, runs, [("seam", "seam_ppc")]) == 0  # no routes: no paper column
    assert {r["paper_diff"] for r in read_rows(tmp_path / "comparison.csv").values()} == {""}


def _swap_ids(root: Path) -> str:
    path = root / "seam_ppc" / "1" / "mask_confusion.npz"
    with np.load(path) as data:
        ids, confusion = data["ids"].tolist(), data["confusion"]
    write_confusions(path, [ids[1], ids[0], *ids[2:]], confusion)
    return f"{path}: its image ids differ from those of {root / 'seam' / '0' / 'mask_confusion.npz'}"


def _missing(root: Path) -> str:
    path = root / "seam" / "2" / "segmentation-msf-crf_confusion.npz"
    path.unlink()
    return f"{path}: confusion file not found"


def _nan(root: Path) -> str:
    """An evaluation with no pixel of any class: mIoU NaN."""
    path = root / "seam" / "0" / "seed_confusion.npz"
    write_confusions(path, IDS["train"], np.zeros((7, 21, 21), np.int64))
    return f"{path}: mIoU is NaN"


def _nan_row(root: Path) -> str:
    path = root / "seam_ppc" / "2" / "seed.json"
    write_metrics_row(path, metrics_row("seed", "train", np.full(21, np.nan), 7, {}))
    return f"{path}: mIoU is NaN"


def _classes(root: Path) -> str:
    path = root / "seam" / "1" / "mask_confusion.npz"
    write_confusions(path, IDS["train"], np.ones((7, 20, 21), np.int64))
    return f"{path}: matrices of 20 classes, 21 expected"


def _stale(root: Path) -> str:
    """A confusion file of another evaluation than its metrics JSON."""
    folder = root / "seam_ppc" / "0"
    (folder / "mask_confusion.npz").write_bytes((root / "seam" / "0" / "mask_confusion.npz").read_bytes())
    return f"{folder / 'mask_confusion.npz'}: 7 images of mIoU"


def _corrupt(root: Path) -> str:
    path = root / "seam" / "1" / "seed_confusion.npz"
    path.write_bytes(b"not a zip")
    return f"{path}: cannot read confusion file"


@pytest.mark.parametrize("damage", [_swap_ids, _missing, _nan, _nan_row, _classes, _stale, _corrupt])
def test_refusals_name_the_file_and_write_nothing(study, capsys, damage):
    tmp_path, runs = study
    expected = damage(tmp_path / "in")
    assert compare_cli(tmp_path, runs, [("seam", "seam_ppc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ppcseg compare-experiments: error: ") and expected in err[0]
    assert not (tmp_path / "comparison.csv").exists()


def test_refusals_of_the_arguments(tmp_path, capsys):
    runs = write_experiment(tmp_path / "in", "a", noise=0.5) + write_experiment(tmp_path / "in", "b", 0.3, (0, 1))
    cases = [
        ([("a", "b")], (), "--pair a b: runs [0, 1, 2] against runs [0, 1]"),
        ([("a", "c")], (), "experiment 'c' has no --run"),
        ([("a", "a")], ("--route", "a", "seam-ppc"), "--route a seam-ppc: route must be one of"),
        ([("a", "a")], ("--route", "d", "seam"), "experiment 'd' has no --run"),
    ]
    for pairs, extra, message in cases:
        assert compare_cli(tmp_path, runs, pairs, extra) == 2
        assert message in capsys.readouterr().err
    assert compare_cli(tmp_path, runs[:-2], [("b", "b")]) == 2  # b's run 1 without its last stage
    assert (
        f"{tmp_path / 'in' / 'b' / '1' / 'seed.json'}: run 1 of b has stages ['seed', 'mask']"
        in capsys.readouterr().err
    )
    runs[runs.index("--run") + 2 : runs.index("--run") + 3] = []  # the first group loses its seed
    assert compare_cli(tmp_path, runs, [("a", "a")]) == 2
    assert "--run a " in capsys.readouterr().err
    assert not (tmp_path / "comparison.csv").exists()


def test_compares_the_files_of_the_evaluation_stage(tmp_path):
    """eval-masks' own outputs: perfect pseudo-masks against masks with a wrong strip give the difference of the
    two metrics rows."""
    voc = make_voc(tmp_path / "VOC2012", size=40, train=4, val=1, extra=0)
    flags = []
    rows = {}
    for name, strip in (("perfect", 0), ("damaged", 12)):
        folder = tmp_path / name
        for image_id in read_ids(voc, "train"):
            mask = load_mask(voc_dirs(voc)["masks_aug"] / f"{image_id}.png").copy()
            mask[:strip] = 0
            save_mask(folder / "masks" / f"{image_id}.png", mask)
        metrics, npz = folder / "mask.json", folder / "mask_confusion.npz"
        run_args = args(data=str(voc), masks=str(folder / "masks"), out_metrics=str(metrics), out_confusion=str(npz))
        masks.run(run_args, default_params())
        rows[name] = json.loads(metrics.read_text())
        flags += ["--run", name, "0", str(metrics), str(npz)]
    assert compare_cli(tmp_path, flags, [("damaged", "perfect")]) == 0
    row = read_rows(tmp_path / "comparison.csv")[("damaged", "perfect", "mask")]
    assert row["method_median"] == "100.00" and row["baseline_median"] == f"{rows['damaged']['mIoU']:.2f}"
    assert math.isclose(float(row["diff_median"]), 100 - rows["damaged"]["mIoU"], abs_tol=0.011)
    assert float(row["ci_low"]) <= float(row["diff_median"]) <= float(row["ci_high"])
