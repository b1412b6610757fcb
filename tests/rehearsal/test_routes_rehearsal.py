"""Every paper route, end to end through Snakemake at real sizes: VOC-sized images, ResNet-38 at crop 448, the
paper's CAM scales, AffinityNet or CRF masks, DeepLab-v1 / v2 and the multi-scale + flip + CRF test, with only the
budgets cut (config/rehearsal/rehearsal.yaml) and every download served from local files in the real formats through
the download stage (tests/rehearsal/fixtures.py)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppcseg.data.cams import load_cams
from ppcseg.data.download import sha256_file
from ppcseg.data.voc import load_mask, read_ids, voc_dirs
from tests.rehearsal.fixtures import FILES, build_archives, build_weights, write_sources
from tests.workflow.helpers import scratch_repo, snakemake

pytestmark = pytest.mark.workflow

ROUTES = {
    "seam_ppc": [],
    "seam": ["config/routes/seam.yaml"],
    "eps_ppc": ["config/routes/eps_ppc.yaml"],
    "eps": ["config/routes/eps.yaml"],
}
# The default run: as few images as keep every stage meaningful (a VOC train image and an SBD-only one, in VOC's two
# orientations; a val image for the test protocol). About 4 minutes on the idle 2-core machine (README, rehearsal section).
SMALL = {"n_train": 1, "n_val": 1, "n_sbd": 1}
DOZEN = {"n_train": 6, "n_val": 3, "n_sbd": 3}  # the slow runs
WEIGHTS = {"resnet38": "data/weights/resnet38.params", "resnet101": "data/weights/resnet101.pth"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    build_weights(folder)
    return folder


def rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as handle:
        return {row["stage"]: row for row in csv.DictReader(handle)}


def rehearse(tmp_path: Path, weights: Path, route: str, sizes: dict[str, int]) -> None:
    repo = scratch_repo(tmp_path / "repo")
    (repo / "sources.lock.yaml").write_text("{}\n")  # a record of the real files would refuse the fixtures
    lock_before = (repo / "sources.lock.yaml").read_bytes()
    archives = tmp_path / "fixtures"
    build_archives(archives, **sizes)
    folders = dict.fromkeys(FILES, archives) | {"resnet38": weights, "resnet101": weights}
    sources = write_sources(tmp_path / "sources.yaml", folders)
    overlays = [*ROUTES[route], "config/rehearsal/rehearsal.yaml", str(sources)]

    start = time.monotonic()
    snakemake(repo, "results/voc_miou.csv", "--cores", "2", "--configfile", *overlays)
    print(f"rehearsal {route} {sizes}: {time.monotonic() - start:.0f} s")

    table = rows(repo / "results/voc_miou.csv")
    train_aug = sizes["n_train"] + sizes["n_sbd"]
    assert {k: int(v["n_images"]) for k, v in table.items()} == {
        "seed": sizes["n_train"],
        "mask": sizes["n_train"],
        "segmentation": sizes["n_val"],
        "segmentation-msf-crf": sizes["n_val"],
    }
    assert all(0 <= float(row["mIoU"]) <= 100 for row in table.values())

    # The downloads went through the stage (checksums verified) and recorded nothing in the lock file.
    assert (repo / "sources.lock.yaml").read_bytes() == lock_before
    eps = route.startswith("eps")
    needed = ["resnet38", "resnet101"] if eps else ["resnet38"]
    for name in needed:
        assert sha256_file(repo / WEIGHTS[name]) == sha256_file(weights / FILES[name])
    assert (repo / WEIGHTS["resnet101"]).exists() == eps  # DeepLab-v2 on ResNet-101 only on the EPS routes

    # CAMs and pseudo-masks at each image's own VOC size.
    root = repo / "data/VOCdevkit/VOC2012"
    ids = read_ids(root, "train_aug")
    assert len(ids) == train_aug
    masks = repo / ("work/runs/0/masks/crf" if eps else "work/runs/0/masks/random_walk")
    sizes_seen = set()
    for image_id in ids:
        with Image.open(voc_dirs(root)["images"] / f"{image_id}.jpg") as img:
            shape = img.size[::-1]
        sizes_seen.add(shape)
        assert load_cams(repo / "work/runs/0/cam/cams", image_id)[1].shape[1:] == shape
        assert load_mask(masks / f"{image_id}.png", expected_shape=shape) is not None
    assert sizes_seen == {(375, 500), (500, 375)}
    if eps:
        assert len(list((repo / "data/saliency").glob("*.png"))) == train_aug
    assert np.isfinite([float(r["mIoU"]) for r in table.values()]).all()


def test_seam_ppc_route_at_real_sizes(tmp_path: Path, weights: Path) -> None:
    rehearse(tmp_path, weights, "seam_ppc", SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("route", list(ROUTES))
def test_route_at_real_sizes_on_a_dozen_images(tmp_path: Path, weights: Path, route: str) -> None:
    rehearse(tmp_path, weights, route, DOZEN)
