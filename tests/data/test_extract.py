"""Safe extraction: good archives unpack atomically; every hostile member is refused with a clear error."""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from tests.data.archive_builders import add_bytes, write_tar

from ppcseg.data.extract import extract_archive
from ppcseg.utils.errors import InputError

GOOD = [("top/a.txt", b"alpha"), ("top/sub/b.txt", b"beta" * 100)]


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE):
    def extra(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)

    return extra


def _special(name: str, kind: bytes):
    def extra(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.devmajor, info.devminor = 1, 3
        tar.addfile(info)

    return extra


def _assert_nothing_left(parent: Path, dest: Path) -> None:
    assert not dest.exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{dest.name}.")], "temporary folder left behind"


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tgz"), ("w:bz2", ".tar.bz2")])
def test_good_tar(tmp_path: Path, mode: str, suffix: str) -> None:
    archive = write_tar(tmp_path / f"good{suffix}", GOOD, mode, extra=_link("top/link", "sub/b.txt"))
    dest = extract_archive(archive, tmp_path / "out")
    assert (dest / "top/a.txt").read_bytes() == b"alpha"
    assert (dest / "top/sub/b.txt").read_bytes() == b"beta" * 100
    assert os.readlink(dest / "top/link") == "sub/b.txt"


def test_hardlink_inside_is_kept(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "h.tar", GOOD, extra=_link("top/hard", "top/a.txt", tarfile.LNKTYPE))
    dest = extract_archive(archive, tmp_path / "out")
    assert (dest / "top/hard").read_bytes() == b"alpha"


def test_include_filter_and_replace(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "good.tar", GOOD)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    extract_archive(archive, dest, include=lambda name: name.endswith("a.txt"))
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == ["top/a.txt"]


@pytest.mark.parametrize(
    "extra,member,words",
    [
        (lambda tar: add_bytes(tar, "../evil.txt", b"x"), "../evil.txt", "'..'"),
        (lambda tar: add_bytes(tar, "top/../../evil.txt", b"x"), "top/../../evil.txt", "'..'"),
        (lambda tar: add_bytes(tar, "/tmp/evil.txt", b"x"), "/tmp/evil.txt", "absolute path"),
        (_link("top/escape", "../../outside"), "top/escape", "symlink"),
        (_link("top/etc", "/etc/passwd"), "top/etc", "symlink"),
        (_link("top/hard", "/etc/passwd", tarfile.LNKTYPE), "top/hard", "hardlink"),
        (_link("top/hard", "top/nothing", tarfile.LNKTYPE), "top/hard", "hardlink"),
        (_special("top/null", tarfile.CHRTYPE), "top/null", "device file"),
        (_special("top/disk", tarfile.BLKTYPE), "top/disk", "device file"),
        (_special("top/pipe", tarfile.FIFOTYPE), "top/pipe", "fifo"),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink-out",
        "symlink-abs",
        "hardlink-abs",
        "hardlink-missing",
        "chardev",
        "blockdev",
        "fifo",
    ],
)
def test_hostile_tar_member_refused(tmp_path: Path, extra, member: str, words: str) -> None:
    archive = write_tar(tmp_path / "bad.tgz", GOOD, "w:gz", extra=extra)
    dest = tmp_path / "out"
    with pytest.raises(InputError) as err:
        extract_archive(archive, dest)
    assert str(archive) in str(err.value) and repr(member) in str(err.value) and words in str(err.value)
    _assert_nothing_left(tmp_path, dest)
    assert not (tmp_path / "evil.txt").exists()


def test_write_through_symlink_refused(tmp_path: Path) -> None:
    def extra(tar: tarfile.TarFile) -> None:
        _link("top/d", ".")(tar)
        add_bytes(tar, "top/d/x.txt", b"x")

    archive = write_tar(tmp_path / "bad.tar", GOOD, extra=extra)
    with pytest.raises(InputError, match="through the symlink"):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_left(tmp_path, tmp_path / "out")


def test_symlink_chain_escape_refused(tmp_path: Path) -> None:
    # Each link looks local on its own ('b' -> 'a/..' normalises to '.'), but a -> . makes b point above the root.
    def extra(tar: tarfile.TarFile) -> None:
        _link("a", ".")(tar)
        _link("b", "a/..")(tar)

    archive = write_tar(tmp_path / "chain.tar", GOOD, extra=extra)
    with pytest.raises(InputError, match="'b'"):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_left(tmp_path, tmp_path / "out")


def test_size_limit(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "big.tar", GOOD)
    with pytest.raises(InputError, match="exceeds the limit of 100 bytes.*top/sub/b.txt"):
        extract_archive(archive, tmp_path / "out", max_bytes=100)
    _assert_nothing_left(tmp_path, tmp_path / "out")


def test_not_an_archive_and_missing(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"hello" * 100)
    with pytest.raises(InputError, match="not a tar or zip archive"):
        extract_archive(junk, tmp_path / "out")
    with pytest.raises(InputError, match="archive not found"):
        extract_archive(tmp_path / "missing.tar", tmp_path / "out")


def test_truncated_tgz(tmp_path: Path) -> None:
    good = write_tar(tmp_path / "good.tgz", GOOD + [("top/c.bin", os.urandom(50_000))], "w:gz")
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good.read_bytes()[:30_000])
    with pytest.raises(InputError, match="cut.tgz"):
        extract_archive(cut, tmp_path / "out")
    _assert_nothing_left(tmp_path, tmp_path / "out")


def _zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_good_zip(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "good.zip", [(n, d, stat.S_IFREG | 0o644) for n, d in GOOD])
    dest = extract_archive(archive, tmp_path / "out")
    assert (dest / "top/sub/b.txt").read_bytes() == b"beta" * 100


@pytest.mark.parametrize(
    "name,mode,words",
    [
        ("../evil.txt", stat.S_IFREG | 0o644, "'..'"),
        ("/abs/evil.txt", stat.S_IFREG | 0o644, "absolute path"),
        ("top/link", stat.S_IFLNK | 0o777, "symlink"),
        ("top/pipe", stat.S_IFIFO | 0o644, "special file"),
    ],
)
def test_hostile_zip_member_refused(tmp_path: Path, name: str, mode: int, words: str) -> None:
    members = [(n, d, stat.S_IFREG | 0o644) for n, d in GOOD] + [(name, b"../../etc/passwd", mode)]
    archive = _zip(tmp_path / "bad.zip", members)
    with pytest.raises(InputError) as err:
        extract_archive(archive, tmp_path / "out")
    assert repr(name) in str(err.value) and words in str(err.value)
    _assert_nothing_left(tmp_path, tmp_path / "out")


def test_zip_size_limit(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "big.zip", [(n, d, stat.S_IFREG | 0o644) for n, d in GOOD])
    with pytest.raises(InputError, match="exceeds the limit"):
        extract_archive(archive, tmp_path / "out", max_bytes=100)
    _assert_nothing_left(tmp_path, tmp_path / "out")
