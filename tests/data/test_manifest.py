"""The dataset manifest: a function of the dataset's content only, refreshed without writing when nothing changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ppcseg.data.manifest import manifest_path, refresh_manifest, stat_cache_path, write_manifest
from ppcseg.utils.errors import InputError


def _dataset(root: Path, images: int = 5) -> Path:
    (root / "JPEGImages").mkdir(parents=True)
    for i in range(images):
        (root / "JPEGImages" / f"{i:06d}.jpg").write_bytes(bytes([i % 256]) * (100 + i))
    (root / "cls_labels.json").write_text('{"000000": [1]}')
    return root


def _stamp(path: Path) -> tuple[int, int, bytes]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, path.read_bytes()


def test_an_unchanged_dataset_writes_nothing(tmp_path):
    root = _dataset(tmp_path / "VOC2012")
    write_manifest(root)
    files = [manifest_path(root), stat_cache_path(root)]
    before = [_stamp(f) for f in files]
    assert refresh_manifest(root) is False
    assert [_stamp(f) for f in files] == before


def test_a_touch_changes_nothing_and_an_edit_with_the_same_size_and_mtime_is_seen(tmp_path):
    root = _dataset(tmp_path / "VOC2012")
    write_manifest(root)
    text = manifest_path(root).read_text()
    (root / "cls_labels.json").touch()
    assert refresh_manifest(root) is False and manifest_path(root).read_text() == text
    labels = root / "cls_labels.json"
    before = labels.stat()
    labels.write_text('{"000000": [2]}')  # same size
    os.utime(labels, ns=(before.st_atime_ns, before.st_mtime_ns))  # `touch -r`: the old mtime back
    assert refresh_manifest(root) is True
    changed = [line.split("\t")[0] for line in set(manifest_path(root).read_text().splitlines()) - set(text.splitlines())]
    assert changed == ["cls_labels.json"]


def test_a_deleted_manifest_comes_back_byte_identical(tmp_path):
    root = _dataset(tmp_path / "VOC2012")
    text = write_manifest(root).read_bytes()
    manifest_path(root).unlink()
    assert refresh_manifest(root) is True
    assert manifest_path(root).read_bytes() == text


@pytest.mark.parametrize("damage", [b"", b"\0" * 64, b"\xff\xfe garbage", b"# entry\tfiles\n"])
def test_a_damaged_manifest_or_stat_cache_is_rebuilt(tmp_path, damage):
    root = _dataset(tmp_path / "VOC2012")
    text = write_manifest(root).read_bytes()
    manifest_path(root).write_bytes(damage)
    stat_cache_path(root).write_bytes(damage)
    assert refresh_manifest(root) is True
    assert manifest_path(root).read_bytes() == text
    assert refresh_manifest(root) is False  # and the rebuilt stat cache serves the next refresh


def test_its_size_does_not_grow_with_the_number_of_files(tmp_path):
    """Snakemake compares the content of inputs up to 1 MB only: the manifest stays a few lines at VOC size."""
    small = write_manifest(_dataset(tmp_path / "small" / "VOC2012", images=3)).read_text()
    large = write_manifest(_dataset(tmp_path / "large" / "VOC2012", images=3000)).read_text()
    assert len(large.splitlines()) == len(small.splitlines()) == 3  # header, JPEGImages, cls_labels.json
    assert len(large) < 1000


def test_no_dataset_writes_nothing(tmp_path):
    assert refresh_manifest(tmp_path / "absent") is False
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_manifest_is_one_line_naming_it(tmp_path):
    root = _dataset(tmp_path / "VOC2012")
    manifest_path(root).mkdir()  # a folder where the manifest belongs: cannot be read as a file
    with pytest.raises(InputError, match=r"VOC2012\.manifest\.tsv: cannot read the dataset manifest"):
        refresh_manifest(root)
