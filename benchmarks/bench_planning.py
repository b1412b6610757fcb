"""What planning costs at VOC's size: `snakemake -n` and `dvc status` on a VOC-sized dataset of tiny files, for
runs [0] / [0, 1, 2] and shards 1 / 32, as ratios to the same commands on the demo's dataset.

    python benchmarks/bench_planning.py               # generates both layouts in a scratch copy, times, prints
    python benchmarks/bench_planning.py --repeat 5

The VOC-sized layout has VOC 2012 + SBD's file counts (17 125 images, 2 913 masks, 12 031 augmented masks, the image
lists and the labels: 32 074 files) of a few bytes each, so the figures measure what the workflow does per file (the
walk of the manifest, DVC's tree) and not the disk. The first dry run hashes every file into the manifest's stat cache
("cold"); later dry runs only stat them ("stat-cached", what every `snakemake` call pays). `dvc status` runs on the
dvc.yaml that `ppcseg export-dvc` writes for each setting. Targets: a stat-cached dry run within 1.3x of the demo's,
and `dvc status` with 3 runs x 32 shards within 3x of one run's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hardware import hardware

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
VOC_COUNTS = {"images": 17_125, "masks": 2_913, "masks_aug": 12_031}
SETTINGS = {"runs [0]": {"runs": [0]}, "runs [0, 1, 2]": {"runs": [0, 1, 2]}}
SHARDS = (1, 32)


def voc_sized(root: Path) -> int:
    """A VOC-layout dataset with VOC's file counts, each file a few bytes; returns the number of files."""
    ids = [f"2008_{i:06d}" for i in range(VOC_COUNTS["images"])]
    for folder, suffix, count in (
        ("JPEGImages", ".jpg", VOC_COUNTS["images"]),
        ("SegmentationClass", ".png", VOC_COUNTS["masks"]),
        ("SegmentationClassAug", ".png", VOC_COUNTS["masks_aug"]),
    ):
        (root / folder).mkdir(parents=True)
        for image_id in ids[:count]:
            (root / folder / f"{image_id}{suffix}").write_bytes(image_id.encode())
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    splits = {"train": ids[:1464], "val": ids[1464:2913], "train_aug": ids[2913 : 2913 + 10_582]}
    for split, members in splits.items():
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in members))
    (root / "cls_labels.json").write_text(json.dumps({i: [1] for i in ids}))
    return sum(1 for p in root.rglob("*") if p.is_file())


def run(cmd: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def timed(cmd: list[str], cwd: Path, repeat: int, ok: tuple[int, ...] = (0,)) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run(cmd, cwd, ok)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def project(dest: Path, dataset: str) -> Path:
    """A scratch copy with `dataset` (demo: the generated one; voc: the VOC-sized one) and a git + DVC repository."""
    sys.path.insert(0, str(REPO))
    from tests.workflow.helpers import scratch_repo

    repo = scratch_repo(dest)
    if dataset == "demo":
        (repo / "root.yaml").write_text("{}\n")
        run([str(BIN / "ppcseg"), "make-synthetic-voc", "--params", "params.yaml", "--params", "config/demo.yaml",
             "--out", "data/synthetic/VOCdevkit/VOC2012"], repo)  # fmt: skip
    else:
        (repo / "root.yaml").write_text("data: {root: data/VOCdevkit/VOC2012}\n")
        print(f"VOC-sized layout: {voc_sized(repo / 'data/VOCdevkit/VOC2012')} files")
    run([str(BIN / "dvc"), "init", "-q", "-f"], repo)
    return repo


def overlays(repo: Path, dataset: str, setting: dict, shards: int) -> list[str]:
    path = repo / "setting.yaml"
    path.write_text(json.dumps({**setting, "execution": {"shards": shards}}))
    return [*(["config/demo.yaml"] if dataset == "demo" else []), "root.yaml", "setting.yaml"]


def measure(repo: Path, dataset: str, repeat: int) -> dict[str, float]:
    figures = {}
    files = overlays(repo, dataset, SETTINGS["runs [0]"], 1)
    snakemake = [str(BIN / "snakemake"), "-n", "--configfile", *files]
    stat_cache = repo / Path(
        f"data/{'synthetic/' if dataset == 'demo' else ''}VOCdevkit/.VOC2012.manifest.tsv.stat.json"
    )
    stat_cache.unlink(missing_ok=True)
    figures["snakemake -n, cold (hashes the dataset)"] = timed(snakemake, repo, 1)
    for name, setting in SETTINGS.items():
        for shards in SHARDS:
            files = overlays(repo, dataset, setting, shards)
            snakemake = [str(BIN / "snakemake"), "-n", "--configfile", *files]
            figures[f"snakemake -n, stat-cached, {name}, shards {shards}"] = timed(snakemake, repo, repeat)
            params = [arg for f in ["params.yaml", *files] for arg in ("--params", f)]
            run([str(BIN / "ppcseg"), "export-dvc", *params, "--out", "dvc.yaml"], repo)
            figures[f"dvc status, {name}, shards {shards}"] = timed(
                [str(BIN / "dvc"), "status", "-q"], repo, repeat, ok=(0, 1)
            )  # 1: changes (nothing ran)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(hardware())
    with tempfile.TemporaryDirectory(prefix="ppcseg-bench-planning-") as tmp:
        demo = measure(project(Path(tmp) / "demo", "demo"), "demo", args.repeat)
        voc = measure(project(Path(tmp) / "voc", "voc"), "voc", args.repeat)
    print(f"\n{'command (median of ' + str(args.repeat) + ')':<60} {'demo s':>8} {'VOC s':>8} {'VOC/demo':>9}")
    for name in demo:
        print(f"{name:<60} {demo[name]:>8.2f} {voc[name]:>8.2f} {voc[name] / demo[name]:>8.2f}x")
    one, wide = voc["dvc status, runs [0], shards 1"], voc["dvc status, runs [0, 1, 2], shards 32"]
    print(f"\nVOC: dvc status with 3 runs x 32 shards / 1 run: {wide / one:.2f}x (target <= 3x)")
    cached = "snakemake -n, stat-cached, runs [0], shards 1"
    print(f"VOC: stat-cached dry run / the demo's: {voc[cached] / demo[cached]:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
