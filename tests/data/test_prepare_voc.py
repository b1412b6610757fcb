"""prepare-voc on small archives in the VOC 2012 and SBD layouts: download -> extract -> convert -> verify."""

from __future__ import annotations

import argparse
import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from tests.data.archive_builders import (
    SBD_ONLY,
    TRAIN_AUG,
    VOC_TRAIN,
    VOC_VAL,
    add_bytes,
    image_shape,
    sbd_mask,
    sbd_members,
    voc_mask,
    voc_members,
    write_tar,
)
from PIL import Image

from ppcseg.data import prepare
from ppcseg.data.download import download
from ppcseg.data.voc import PALETTE, read_class_labels, read_ids
from ppcseg.utils.errors import InputError


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_no_output(out: Path) -> None:
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, f"scratch or temporary folders left: {leftovers}"


def _check_prepared(root: Path) -> None:
    assert read_ids(root, "train") == VOC_TRAIN
    assert read_ids(root, "val") == VOC_VAL
    assert read_ids(root, "train_aug") == TRAIN_AUG
    labels = read_class_labels(root)
    assert sorted(labels) == sorted(set(TRAIN_AUG) | set(VOC_VAL))
    for image_id, classes in labels.items():
        with Image.open(root / "SegmentationClassAug" / f"{image_id}.png") as img:
            assert img.mode == "P" and img.getpalette()[:63] == PALETTE[:63]
            mask = np.asarray(img)
        expected = voc_mask(image_id) if image_id in VOC_TRAIN + VOC_VAL else sbd_mask(image_id)
        np.testing.assert_array_equal(mask, expected)  # VOC masks take precedence (2007_000010 is in SBD too)
        assert mask.shape == image_shape(image_id)
        assert classes == sorted(int(c) for c in np.unique(mask) if 0 < c < 255)
    assert sorted(p.stem for p in (root / "JPEGImages").glob("*.jpg")) == sorted(
        VOC_TRAIN + VOC_VAL + SBD_ONLY + ["2009_000099"]
    )
    assert sorted(p.name for p in root.iterdir()) == [
        "ImageSets",
        "JPEGImages",
        "SegmentationClass",
        "SegmentationClassAug",
        "cls_labels.json",
    ]


def test_prepare_from_file_urls(tmp_path: Path, voc_tar: Path, sbd_tgz: Path) -> None:
    voc = download(voc_tar.as_uri(), tmp_path / "downloads" / "voc.tar", sha256=_sha(voc_tar))
    assert voc == _sha(voc_tar)
    download(sbd_tgz.as_uri(), tmp_path / "downloads" / "sbd.tgz", sha256=_sha(sbd_tgz))
    out = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    params = {"data": {"expect_full": False}}
    args = argparse.Namespace(
        voc_archive=tmp_path / "downloads" / "voc.tar",
        sbd_archive=tmp_path / "downloads" / "sbd.tgz",
        out=out,
        threads=None,
    )
    prepare.run(args, params)
    _check_prepared(out)
    # Only the dataset and its manifest (the workflow's record of the dataset's files), no leftovers.
    manifest = ["VOC2012.manifest.tsv", ".VOC2012.manifest.tsv.stat.json"]
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["VOC2012", *manifest])


def test_prepare_from_local_http_with_workers(tmp_path: Path, http_server, voc_tar: Path, sbd_tgz: Path) -> None:
    for archive in (voc_tar, sbd_tgz):
        (http_server.root / archive.name).write_bytes(archive.read_bytes())
    http_server.truncate = [5_000]  # the first response breaks off: resumed with a Range request
    fast = {"retries": 2, "backoff_s": 0.01}
    voc = download(f"{http_server.base}/{voc_tar.name}", tmp_path / "dl" / "voc.tar", sha256=_sha(voc_tar), **fast)
    sbd = download(f"{http_server.base}/{sbd_tgz.name}", tmp_path / "dl" / "sbd.tgz", sha256=_sha(sbd_tgz), **fast)
    assert voc and sbd and http_server.requests[1]["range"] == "bytes=5000-"
    out = tmp_path / "VOC2012"
    prepare.prepare_voc(tmp_path / "dl" / "voc.tar", tmp_path / "dl" / "sbd.tgz", out, workers=2)
    _check_prepared(out)


def test_expect_full_checks_counts(tmp_path: Path, voc_tar: Path, sbd_tgz: Path) -> None:
    out = tmp_path / "VOC2012"
    with pytest.raises(InputError) as err:
        prepare.prepare_voc(voc_tar, sbd_tgz, out, expect_full=True)
    message = str(err.value)
    assert "JPEGImages: 10, expected 17125" in message and "train_aug: 7, expected 10582" in message
    _assert_no_output(out)


def test_replaces_previous_output(tmp_path: Path, voc_tar: Path, sbd_tgz: Path) -> None:
    out = tmp_path / "VOC2012"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    prepare.prepare_voc(voc_tar, sbd_tgz, out)
    _check_prepared(out)


def test_all_problems_in_one_error(tmp_path: Path, sbd_tgz: Path) -> None:
    voc = write_tar(tmp_path / "voc.tar", voc_members(missing_jpeg="2008_000022", bad_palette="2007_000050"))
    sbd = write_tar(tmp_path / "sbd.tgz", sbd_members(missing_mat="2008_000033"), "w:gz")
    out = tmp_path / "VOC2012"
    with pytest.raises(InputError) as err:
        prepare.prepare_voc(voc, sbd, out)
    message = str(err.value)
    assert "missing JPEG (1): 2008_000022" in message
    assert "missing SBD cls/<id>.mat (1): 2008_000033" in message
    assert "without the VOC palette (1): 2007_000050" in message
    _assert_no_output(out)


def test_bad_mat_file(tmp_path: Path, voc_tar: Path) -> None:
    sbd = write_tar(tmp_path / "sbd.tgz", sbd_members(bad_mat="2008_000044"), "w:gz")
    out = tmp_path / "VOC2012"
    with pytest.raises(InputError, match=r"2008_000044\.mat: cannot read MATLAB file"):
        prepare.prepare_voc(voc_tar, sbd, out)
    _assert_no_output(out)


def _link(name: str, target: str, kind: bytes):
    def extra(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        if kind == tarfile.CHRTYPE:
            info.devmajor, info.devminor = 1, 3
        tar.addfile(info)

    return extra


P = "VOCdevkit/VOC2012/JPEGImages/"


@pytest.mark.parametrize(
    "extra,words",
    [
        (lambda tar: add_bytes(tar, f"{P}../../../../evil.jpg", b"x"), "'..'"),
        (lambda tar: add_bytes(tar, "/tmp/ppcseg-evil.jpg", b"x"), "absolute path"),
        (_link(f"{P}evil.jpg", "../../../../../etc/passwd", tarfile.SYMTYPE), "symlink"),
        (_link(f"{P}null.jpg", "", tarfile.CHRTYPE), "device file"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "device"],
)
@pytest.mark.parametrize("which", ["voc", "sbd"])
def test_hostile_archive_leaves_no_output(tmp_path: Path, extra, words: str, which: str) -> None:
    if which == "voc":
        voc = write_tar(tmp_path / "voc.tar", voc_members(), extra=extra)
        sbd = write_tar(tmp_path / "sbd.tgz", sbd_members(), "w:gz")
    else:
        voc = write_tar(tmp_path / "voc.tar", voc_members())
        sbd = write_tar(tmp_path / "sbd.tgz", sbd_members(), "w:gz", extra=extra)
    out = tmp_path / "data" / "VOC2012"
    with pytest.raises(InputError) as err:
        prepare.prepare_voc(voc, sbd, out)
    assert words in str(err.value) and str(voc if which == "voc" else sbd) in str(err.value)
    _assert_no_output(out)
    assert not Path("/tmp/ppcseg-evil.jpg").exists()


def test_archives_without_the_expected_layout(tmp_path: Path, voc_tar: Path, sbd_tgz: Path) -> None:
    empty = write_tar(tmp_path / "empty.tar", [("README", b"hello")])
    with pytest.raises(InputError, match="no VOCdevkit/VOC2012/JPEGImages"):
        prepare.prepare_voc(empty, sbd_tgz, tmp_path / "VOC2012")
    with pytest.raises(InputError, match="no benchmark_RELEASE/dataset/cls"):
        prepare.prepare_voc(voc_tar, empty, tmp_path / "VOC2012")
    _assert_no_output(tmp_path / "VOC2012")


def test_labels_json_is_what_readers_expect(tmp_path: Path, voc_tar: Path, sbd_tgz: Path) -> None:
    out = prepare.prepare_voc(voc_tar, sbd_tgz, tmp_path / "VOC2012")
    raw = json.loads((out / "cls_labels.json").read_text())
    assert raw == read_class_labels(out)


def test_expect_full_passes_with_matching_counts(
    tmp_path: Path, voc_tar: Path, sbd_tgz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = {"JPEGImages": 10, "train": 3, "val": 2, "train_aug": 7, "SegmentationClassAug": 9}
    monkeypatch.setattr(prepare, "FULL_COUNTS", small)
    _check_prepared(prepare.prepare_voc(voc_tar, sbd_tgz, tmp_path / "VOC2012", expect_full=True))


def test_cli_reports_bad_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ppcseg.cli import main
    from ppcseg.config import REPO_ROOT

    bad = write_tar(tmp_path / "voc.tar", voc_members(), extra=lambda tar: add_bytes(tar, "../evil", b"x"))
    sbd = write_tar(tmp_path / "sbd.tgz", sbd_members(), "w:gz")
    out = tmp_path / "VOC2012"
    argv = ["prepare-voc", "--params", str(REPO_ROOT / "params.yaml"), "--voc-archive", str(bad)]
    assert main([*argv, "--sbd-archive", str(sbd), "--out", str(out)]) == 2
    assert "'../evil'" in capsys.readouterr().err
    _assert_no_output(out)
