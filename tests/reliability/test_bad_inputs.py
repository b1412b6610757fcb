"""The bad-input corpus: each broken input gives one clear message naming the file or key, exit status 2 and no
partial output. Stages are run through the real CLI entry point (`ppcseg.cli.main`)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ppcseg.data.voc import read_ids, save_mask, voc_dirs
from ppcseg.utils.checkpoint import save_checkpoint
from tests.reliability.helpers import assert_clear_failure, cli, copy_root, eval_seeds


def test_truncated_jpeg(corpus, tmp_path):
    base, _, overlay = corpus
    root = copy_root(corpus, tmp_path)
    image_id = read_ids(root, "train")[0]
    path = voc_dirs(root)["images"] / f"{image_id}.jpg"
    path.write_bytes(path.read_bytes()[:200])
    status, err = cli("infer-cam", overlay, "--data", root, "--checkpoint", base / "cam.pt", "--out", tmp_path / "c")
    assert_clear_failure(status, err, f"{image_id}.jpg")
    assert not (tmp_path / "c").exists()


def test_mask_of_the_wrong_size(corpus, tmp_path):
    base, _, _ = corpus
    root = copy_root(corpus, tmp_path)
    image_id = read_ids(root, "train")[0]
    save_mask(voc_dirs(root)["masks"] / f"{image_id}.png", np.zeros((50, 60), np.uint8))
    status, err = eval_seeds(root, base / "cams", tmp_path)
    assert_clear_failure(status, err, f"{image_id}.png", "size")
    assert not (tmp_path / "seed.json").exists()


def test_mask_with_labels_out_of_range(corpus, tmp_path):
    base, _, _ = corpus
    root = copy_root(corpus, tmp_path)
    image_id = read_ids(root, "train")[1]
    path = voc_dirs(root)["masks"] / f"{image_id}.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[0, 0] = 42
    save_mask(path, mask)
    status, err = eval_seeds(root, base / "cams", tmp_path)
    assert_clear_failure(status, err, f"{image_id}.png", "42")


def test_listed_image_missing(corpus, tmp_path):
    base, _, overlay = corpus
    root = copy_root(corpus, tmp_path)
    image_id = read_ids(root, "train_aug")[0]
    (voc_dirs(root)["images"] / f"{image_id}.jpg").unlink()
    status, err = cli("infer-cam", overlay, "--data", root, "--checkpoint", base / "cam.pt", "--out", tmp_path / "c")
    assert_clear_failure(status, err, f"{image_id}.jpg", "not found")
    assert not (tmp_path / "c").exists()


def test_empty_image_list(corpus, tmp_path):
    base, _, _ = corpus
    root = copy_root(corpus, tmp_path)
    (voc_dirs(root)["lists"] / "train.txt").write_text("")
    status, err = eval_seeds(root, base / "cams", tmp_path)
    assert_clear_failure(status, err, "train.txt", "empty")


def test_class_labels_inconsistent_with_masks(corpus, tmp_path):
    base, _, _ = corpus
    root = copy_root(corpus, tmp_path)
    labels_path = voc_dirs(root)["labels"]
    labels = json.loads(labels_path.read_text())
    image_id = read_ids(root, "train")[0]
    labels[image_id] = sorted(set(labels[image_id]) ^ {20})
    labels_path.write_text(json.dumps(labels))
    status, err = eval_seeds(root, base / "cams", tmp_path)
    assert_clear_failure(status, err, "cls_labels.json", image_id)


@pytest.mark.parametrize("kind", ["corrupt", "wrong_arch", "wrong_classes"])
def test_bad_checkpoint(corpus, tmp_path, kind):
    base, root, overlay = corpus
    ckpt = tmp_path / "bad.pt"
    if kind == "corrupt":
        ckpt.write_bytes((base / "cam.pt").read_bytes()[:1000])
        needle = "cannot load checkpoint"
    else:
        state = torch.load(base / "cam.pt", weights_only=True)
        meta = state["meta"] | ({"arch": "affinitynet"} if kind == "wrong_arch" else {"num_classes": 20})
        save_checkpoint(ckpt, {"model": state["model"]}, meta)
        needle = "arch" if kind == "wrong_arch" else "num_classes"
    status, err = cli("infer-cam", overlay, "--data", root, "--checkpoint", ckpt, "--out", tmp_path / "c")
    assert_clear_failure(status, err, "bad.pt", needle)
    assert not (tmp_path / "c").exists()


def test_checkpoint_with_pickled_code_is_refused(corpus, tmp_path):
    """An untrusted file that would run code when unpickled is rejected by weights_only loading."""
    _, root, overlay = corpus
    ckpt = tmp_path / "evil.pt"
    torch.save({"format": "ppcseg-checkpoint-v1", "payload": subprocess.Popen}, ckpt)
    status, err = cli("infer-cam", overlay, "--data", root, "--checkpoint", ckpt, "--out", tmp_path / "c")
    assert_clear_failure(status, err, "evil.pt", "cannot load checkpoint")


def test_cam_file_of_the_wrong_shape(corpus, tmp_path):
    base, root, _ = corpus
    cams = tmp_path / "cams"
    shutil.copytree(base / "cams", cams)
    image_id = read_ids(root, "train")[0]
    data = dict(np.load(cams / f"{image_id}.npz"))
    data["cams"] = data["cams"][:, :10, :10]
    np.savez_compressed(cams / f"{image_id}.npz", **data)
    status, err = eval_seeds(root, cams, tmp_path)
    assert_clear_failure(status, err, f"{image_id}.npz")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("cam:\n  bogus: 1\n", "cam.bogus"),
        ("cam:\n  lr: fast\n", "cam.lr"),
        ("cam:\n  batch_size: 0\n", "cam.batch_size"),
        ("seeds:\n  bg_threshold: 1.5\n", "seeds.bg_threshold"),
    ],
)
def test_bad_params(corpus, tmp_path, text, key):
    base, root, _ = corpus
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(text)
    status, err = eval_seeds(root, base / "cams", tmp_path, overlay)
    assert_clear_failure(status, err, key)
    assert not (tmp_path / "s.json").exists()


@contextlib.contextmanager
def small_filesystem(path: Path, size: str, readonly: bool = False):
    path.mkdir()
    options = f"size={size}" + (",ro" if readonly else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_unwritable_output_folder(corpus, tmp_path):
    base, root, _ = corpus
    with small_filesystem(tmp_path / "ro", "1m", readonly=True) as ro:
        status, err = eval_seeds(root, base / "cams", ro / "out")
        assert_clear_failure(status, err, str(ro / "out"))


def test_full_disk_during_checkpoint_write(corpus, tmp_path):
    _, root, overlay = corpus
    with small_filesystem(tmp_path / "small", "64k") as small:
        status, err = cli(
            "train-cam",
            overlay,
            "--data",
            root,
            "--state-dir",
            tmp_path / "state",
            "--out",
            small / "cam.pt",
            "--out-loss",
            tmp_path / "loss.csv",
        )
        assert_clear_failure(status, err, "cam.pt")
        assert list(small.iterdir()) == [], "no partial checkpoint may stay behind"


def test_full_disk_during_a_per_image_stage_names_file_and_folder(corpus, tmp_path):
    """Was '[Errno 28] No space left on device', naming neither; the partial folder keeps whole files only."""
    base, root, overlay = corpus
    with small_filesystem(tmp_path / "small", "24k") as small:
        status, err = cli(
            "infer-cam", overlay, "--data", root, "--checkpoint", base / "cam.pt", "--out", small / "cams"
        )
        partial = small / "cams.partial"
        assert_clear_failure(status, err, f"{partial}/", ".npz: No space left on device", f"writing it in {partial}")
        assert not (small / "cams").exists()
        left = [p.name for p in partial.iterdir() if p.name != ".ppcseg-partial.json"]
        assert left and all(name.endswith(".npz") and not name.startswith(".") for name in left), left
