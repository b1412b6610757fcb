"""Hostile and odd inputs (issue 21): ids that are paths, images that decode differently per stage, params that are
not finite numbers, labels of the wrong type, links leading outside, CAM values out of range, interruptions.
Each gives one line naming the file, key or id and exit status 2 (130 for Ctrl-C), and writes nothing outside the
stage's outputs. Stages run through the real CLI entry point, on the corpus of `test_bad_inputs`."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ppcseg.data.voc import load_image, read_class_labels, read_ids, voc_dirs
from tests.reliability.helpers import PARAMS, TINY_CAM, assert_clear_failure, cli, copy_root, eval_seeds
from tests.timing import HANG_GUARD_S

REPO = Path(__file__).resolve().parents[2]


def infer_cam(base: Path, root: Path, overlay: Path, out: Path) -> tuple[int, str]:
    return cli("infer-cam", overlay, "--data", root, "--checkpoint", base / "cam.pt", "--out", out)


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")} if path.exists() else set()


# ------------------------------------------------------------------------------------------------ 1. image ids


@pytest.mark.parametrize(
    ("bad_id", "needle"),
    [
        ("../../outside/evil", "path separator"),
        ("/tmp/ppcseg-absolute-evil", "path separator"),
        ("..", "starts with '.'"),
        ("2007 000032", "whitespace"),
        ("2007_\x1b[2J000032", "control character"),
        ("2007_000032;rm", "';'"),
    ],
)
def test_image_id_that_is_not_a_plain_name(corpus, tmp_path, bad_id, needle):
    """Ids become file names in every stage: a path, a control character or whitespace is refused with the list's
    file and line, before anything is read or written (infer-cam used to write evil.npz outside --out)."""
    base, _, overlay = corpus
    root = copy_root(corpus, tmp_path)
    lists = voc_dirs(root)["lists"] / "train_aug.txt"
    lines = lists.read_text().splitlines()
    lines.insert(2, bad_id)
    lists.write_text("\n".join(lines) + "\n")
    labels = json.loads(voc_dirs(root)["labels"].read_text())
    labels[bad_id] = [1]  # the attacker also controls cls_labels.json; the list is checked first
    voc_dirs(root)["labels"].write_text(json.dumps(labels))
    before = files_under(tmp_path)
    status, err = infer_cam(base, root, overlay, tmp_path / "out" / "cams")
    assert_clear_failure(status, err, "train_aug.txt:3", needle)
    assert files_under(tmp_path) == before
    assert not Path("/tmp/ppcseg-absolute-evil.npz").exists()


def test_duplicate_image_id(corpus, tmp_path):
    """A repeated id used to be counted twice (n_images and mIoU changed silently)."""
    base, _, _ = corpus
    root = copy_root(corpus, tmp_path)
    lists = voc_dirs(root)["lists"] / "train.txt"
    ids = lists.read_text().split()
    lists.write_text("\n".join([*ids, ids[1]]) + "\n")
    status, err = eval_seeds(root, base / "cams", tmp_path)
    assert_clear_failure(status, err, f"train.txt:{len(ids) + 1}", ids[1], "twice", "line 2")
    assert not (tmp_path / "seed.json").exists()


def test_real_voc_layout_ids_are_accepted(tmp_path):
    root = tmp_path / "VOC2012"
    voc_dirs(root)["lists"].mkdir(parents=True)
    ids = ["2007_000032", "2008_000002", "n01440764_10026", "img-01.v2", "_x"]
    (voc_dirs(root)["lists"] / "train.txt").write_text("\n".join(ids) + "\r\n\n")
    assert read_ids(root, "train") == ids


# ------------------------------------------------------------------------------------------------ 4. labels


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda labels, i: labels | {i: [True]}, ["true"]),
        (lambda labels, i: labels | {i: [1.0]}, ["1.0"]),
        (lambda labels, i: labels | {"../evil": [1]}, ["'../evil'", "path separator"]),
        (lambda labels, i: [labels], ["list"]),
    ],
    ids=["true-as-class", "float-class", "path-id", "top-level-list"],
)
def test_class_labels_of_the_wrong_type(corpus, tmp_path, edit, needles):
    base, _, _ = corpus
    root = copy_root(corpus, tmp_path)
    path = voc_dirs(root)["labels"]
    image_id = read_ids(root, "train")[0]
    path.write_text(json.dumps(edit(json.loads(path.read_text()), image_id)))
    status, err = eval_seeds(root, base / "cams", tmp_path)
    needles = [n.replace("{id}", image_id) for n in needles]
    assert_clear_failure(status, err, "cls_labels.json", *needles)
    if "true" in needles:
        assert image_id in err


def test_class_labels_with_a_repeated_id(corpus, tmp_path):
    root = copy_root(corpus, tmp_path)
    path = voc_dirs(root)["labels"]
    image_id = read_ids(root, "train")[0]
    text = path.read_text().rstrip().rstrip("}") + f', "{image_id}": [3]}}'
    path.write_text(text)
    with pytest.raises(Exception, match=f"{image_id}.*twice"):
        read_class_labels(root)


# ------------------------------------------------------------------------------------------------ 3. params


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("cam:\n  lr: .nan\n", ["cam.lr", "not a finite number"]),
        ("cam:\n  poly_power: .inf\n", ["cam.poly_power", "not a finite number"]),
        ("seeds:\n  bg_threshold: .nan\n", ["seeds.bg_threshold", "not a finite number"]),
        (
            "cam:\n  lr: 0.1\nseeds:\n  bg_threshold: 0.2\ncam:\n  ppc: false\n",
            ["duplicate key 'cam'", "lines 1 and 5"],
        ),
        ("seeds:\n  bg_threshold: 0.2\n  bg_threshold: 0.3\n", ["duplicate key 'bg_threshold'", "lines 2 and 3"]),
    ],
    ids=["nan", "inf", "nan-in-range", "duplicate-section", "duplicate-key"],
)
def test_params_not_finite_or_repeated(corpus, tmp_path, text, needles):
    base, root, _ = corpus
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(text)
    status, err = eval_seeds(root, base / "cams", tmp_path, overlay)
    assert_clear_failure(status, err, *needles)
    assert not (tmp_path / "seed.json").exists()


def test_params_file_not_utf8(corpus, tmp_path):
    base, root, _ = corpus
    overlay = tmp_path / "latin1.yaml"
    overlay.write_bytes("seeds:\n  bg_threshold: 0.2  # r\xe9glage\n".encode("latin-1"))
    status, err = cli(
        "eval-seeds", overlay, "--data", root, "--cams", base / "cams", "--out-metrics", tmp_path / "s.json",
        "--out-curve", tmp_path / "c.csv",
    )  # fmt: skip
    assert_clear_failure(status, err, "latin1.yaml", "not UTF-8")


def test_global_batch_larger_than_the_dataset(corpus, tmp_path):
    _, root, _ = corpus
    overlay = tmp_path / "big.yaml"
    overlay.write_text(yaml.safe_dump({"cam": TINY_CAM | {"batch_size": 100000}}))
    out = tmp_path / "out"
    status, err = cli(
        "train-cam", overlay, "--data", root, "--state-dir", out / "state", "--out", out / "cam.pt",
        "--out-loss", out / "loss.csv",
    )  # fmt: skip
    assert_clear_failure(status, err, "cam.batch_size", "100000", "train_aug")
    assert not out.exists()

    overlay.write_text(
        yaml.safe_dump(
            {
                "segmentation": {
                    "config": "deeplabv1-largefov_tiny_1xb4-500_voc12pseudo-96x96.py",
                    "backbone": "tiny",
                    "batch_size": 100000,
                }
            }
        )
    )
    status, err = cli(
        "train-seg", overlay, "--data", root, "--masks", voc_dirs(root)["masks_aug"], "--work-dir", out / "runner",
        "--out", out / "seg.pth",
    )  # fmt: skip
    assert_clear_failure(status, err, "segmentation.batch_size", "100000")
    assert not (out / "seg.pth").exists()


def test_loss_that_is_not_finite_stops_training(corpus, tmp_path):
    """lr 10 (in the schema's range) diverges on the tiny net: the run stops at the first NaN naming step and term,
    and writes no final checkpoint that the pipeline would take as complete."""
    _, root, _ = corpus
    overlay = tmp_path / "diverge.yaml"
    overlay.write_text(yaml.safe_dump({"cam": TINY_CAM | {"lr": 10.0, "max_steps": 8, "checkpoint_every": 100}}))
    out = tmp_path / "out"
    status, err = cli(
        "train-cam", overlay, "--data", root, "--state-dir", out / "state", "--out", out / "cam.pt",
        "--out-loss", out / "loss.csv",
    )  # fmt: skip
    assert_clear_failure(status, err, "loss term '", "at step ", "without writing a checkpoint")
    assert "'total'" not in err  # the term that went first, not the sum
    assert not (out / "cam.pt").exists()


# ------------------------------------------------------------------------------------------------ 2. image decoding


def _exif_rotated_jpeg(path: Path, rgb: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    Image.fromarray(rgb).save(path, format="JPEG", quality=95, exif=exif.tobytes())


def _odd_images(folder: Path) -> dict[str, Path]:
    """One `<kind>.jpg` per odd-but-readable kind (the name keeps the VOC suffix; PIL and OpenCV sniff the format)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    paths = {k: folder / f"{k}.jpg" for k in ("exif_rotated", "greyscale", "cmyk", "palette", "rgba_png")}
    _exif_rotated_jpeg(paths["exif_rotated"], rgb)
    Image.fromarray(rgb).convert("L").save(paths["greyscale"], format="JPEG")
    Image.fromarray(rgb).convert("CMYK").save(paths["cmyk"], format="JPEG")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(paths["palette"], format="PNG")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(paths["rgba_png"], format="PNG")
    return paths


def test_every_stage_reads_the_same_pixels(tmp_path):
    """train-seg's mmseg pipeline (the loading step of the config it trains with) gives exactly the pixels of the
    reader of the CAM, refine and eval stages, EXIF orientation ignored as the official code does (OpenCV's
    LoadImageFromFile rotated the EXIF image and converted CMYK differently)."""
    from mmengine.dataset import Compose
    from mmseg.registry import TRANSFORMS

    from ppcseg.config import load_params
    from ppcseg.segment.train import load_config

    seg = load_params([PARAMS, str(REPO / "config" / "demo.yaml")])["segmentation"]
    pipeline = load_config(seg["config"]).train_dataloader.dataset.pipeline
    steps = [step for step in pipeline if step["type"].startswith("Load") and "Anno" not in step["type"]]
    load_steps = Compose([TRANSFORMS.build(step) for step in steps])
    for kind, path in _odd_images(tmp_path).items():
        expected = load_image(path)
        got = load_steps({"img_path": str(path)})["img"][..., ::-1]  # mmseg's loaders give BGR
        assert got.shape == expected.shape, kind
        assert np.array_equal(got, expected), kind
    with Image.open(tmp_path / "exif_rotated.jpg") as img:
        assert load_image(tmp_path / "exif_rotated.jpg").shape[:2] == (img.height, img.width) == (24, 40)


@pytest.mark.parametrize("kind", ["16bit", "oversized"])
def test_image_that_cannot_be_read_faithfully(corpus, tmp_path, kind, monkeypatch):
    base, _, overlay = corpus
    root = copy_root(corpus, tmp_path)
    image_id = read_ids(root, "train_aug")[0]
    path = voc_dirs(root)["images"] / f"{image_id}.jpg"
    if kind == "16bit":
        Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(path, format="PNG")
        needle = "I;16"
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)  # 64x64 is then a "decompression bomb"
        needle = "too large"
    status, err = infer_cam(base, root, overlay, tmp_path / "c")
    assert_clear_failure(status, err, f"{image_id}.jpg", needle)
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------------------------ 5. links


def test_image_that_links_outside_its_folder(corpus, tmp_path):
    base, _, overlay = corpus
    root = copy_root(corpus, tmp_path)
    image_id = read_ids(root, "train_aug")[0]
    path = voc_dirs(root)["images"] / f"{image_id}.jpg"
    outside = tmp_path / "outside.jpg"
    shutil.move(path, outside)
    path.symlink_to(outside)
    status, err = infer_cam(base, root, overlay, tmp_path / "c")
    assert_clear_failure(status, err, f"{image_id}.jpg", "symlink", "outside")


def test_prepared_saliency_folder_holds_no_links(tmp_path):
    """An archive link that stays inside the archive (maps/b.png -> ../shared/b.data) pointed outside the prepared
    folder once moved there (dangling, or to whatever lies beside it); the folder now holds its content."""
    png = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(png, format="PNG")
    archive = tmp_path / "saliency.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("shared/b.data", "maps/a.png"):
            info = tarfile.TarInfo(name)
            info.size = len(png.getvalue())
            tar.addfile(info, io.BytesIO(png.getvalue()))
        link = tarfile.TarInfo("maps/b.png")
        link.type, link.linkname = tarfile.SYMTYPE, "../shared/b.data"
        tar.addfile(link)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "b.data").write_bytes(b"not the archive's file")  # what the moved link would reach
    out = tmp_path / "saliency"
    status, err = cli("prepare-saliency", None, "--archive", archive, "--out", out)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert not any(p.is_symlink() for p in out.iterdir())
    assert (out / "b.png").read_bytes() == png.getvalue()


# ------------------------------------------------------------------------------------------------ 6. CAM range


def test_cam_file_with_values_out_of_range(corpus, tmp_path):
    base, root, _ = corpus
    cams = tmp_path / "cams"
    shutil.copytree(base / "cams", cams)
    image_id = read_ids(root, "train")[0]
    data = dict(np.load(cams / f"{image_id}.npz"))
    data["cams"] = (data["cams"].astype(np.float32) * 3.0).astype(np.float16)  # a CAM that was never normalised
    np.savez_compressed(cams / f"{image_id}.npz", **data)
    status, err = eval_seeds(root, cams, tmp_path)
    assert_clear_failure(status, err, f"{image_id}.npz", "[0, 1]")
    assert not (tmp_path / "seed.json").exists()


# ------------------------------------------------------------------------------------------------ 7. messages


def test_ctrl_c_gives_one_line_and_exit_130(corpus, tmp_path):
    _, root, _ = corpus
    overlay = tmp_path / "long.yaml"
    # A state after every step: the second one shows the run is inside its training loop (the loss CSV is written
    # only when the loop ends).
    overlay.write_text(yaml.safe_dump({"cam": TINY_CAM | {"max_steps": 100000, "checkpoint_every": 1}}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ppcseg", "train-cam", "--params", PARAMS, "--params", str(overlay), "--data",
           str(root), "--state-dir", str(out / "state"), "--out", str(out / "cam.pt"), "--out-loss",
           str(out / "loss.csv")]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + HANG_GUARD_S
    while (
        proc.poll() is None
        and time.monotonic() < deadline
        and not any(int(p.stem.split("_")[1]) >= 2 for p in (out / "state").glob("state_*.pt"))
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "ppcseg train-cam: interrupted, resume with the same command"
    assert not (out / "cam.pt").exists()


def test_download_url_naming_a_folder(corpus, tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    overlay = tmp_path / "mirror.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"sources": {"sbd": {"url": folder.as_uri()}}}}))
    status, err = cli("download", overlay, "--source", "sbd", "--out", tmp_path / "sbd.tgz")
    assert_clear_failure(status, err, str(folder), "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror", "mirror.yaml"]


def test_unwritable_home_does_not_stop_export_dvc(tmp_path):
    """Snakemake (inside export-dvc) creates ~/.cache/snakemake at start-up; HOME=/dev/null made that an OSError."""
    env = os.environ | {"HOME": "/dev/null", "OMP_NUM_THREADS": "1"}
    env.pop("XDG_CACHE_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ppcseg", "export-dvc", "--params", PARAMS, "--out", str(tmp_path / "dvc.yaml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dvc.yaml").is_file()


def test_overlay_path_with_a_space_stays_one_argument(tmp_path):
    """Every rule's shell command quotes its paths: an overlay under 'my configs/' used to be split in two."""
    overlay = tmp_path / "my configs" / "demo.yaml"
    overlay.parent.mkdir()
    shutil.copy(REPO / "config" / "demo.yaml", overlay)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "-n", "-p", "--cores", "1", "--configfile", str(overlay)],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if line.startswith("Shell command: ppcseg")]
    assert commands
    quoted = "'" + os.path.relpath(overlay, REPO) + "'"
    for command in commands:
        assert f"--params {quoted}" in command, command
