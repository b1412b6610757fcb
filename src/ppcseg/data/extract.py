"""Safe extraction of downloaded tar (.tar, .tgz, .tar.gz, ...) and zip archives.

Archives come from the network, so every member is checked before anything is written:
no absolute paths or `..` components, no member written through a symlink of the archive, symlinks must resolve
inside the target folder, hardlinks must point to a regular file earlier in the archive, no device files or fifos,
and the total unpacked size is bounded. Extraction goes into a temporary folder that is renamed into place only when
everything succeeded, so a refused or interrupted archive leaves nothing behind.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_dir

# Bigger than VOC trainval (about 2 GB unpacked) and SBD (about 1.5 GB) together, small enough to stop a bomb.
DEFAULT_MAX_BYTES = 16 * 1024**3
_CHUNK = 1 << 20


def _clean_name(archive: Path, name: str) -> str:
    """The member's path, normalised; InputError if it could land outside the target folder."""
    if not name or "\x00" in name:
        raise InputError(f"{archive}: member {name!r} has an invalid name")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InputError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InputError(f"{archive}: member {name!r} contains '..' and would land outside the target folder")
    return "/".join(parts)


def _inside(path: str) -> bool:
    """Whether a normalised relative POSIX path stays inside the root."""
    norm = posixpath.normpath(path)
    return not (norm == ".." or norm.startswith("../") or posixpath.isabs(norm))


def _check_not_through_link(archive: Path, name: str, links: set[str]) -> None:
    parts = name.split("/")
    for depth in range(1, len(parts)):
        if "/".join(parts[:depth]) in links:
            raise InputError(f"{archive}: member {name!r} would be written through the symlink {parts[depth - 1]!r}")


def _check_tar(
    archive: Path, tar: tarfile.TarFile, include: Callable[[str], bool] | None, max_bytes: int
) -> list[tuple[tarfile.TarInfo, str]]:
    """Validate every member; returns the (member, clean name) pairs to extract, in archive order."""
    selected: list[tuple[tarfile.TarInfo, str]] = []
    links: set[str] = set()
    files: set[str] = set()
    total = 0
    for member in tar:
        name = _clean_name(archive, member.name)
        if not name:
            continue
        wanted = include is None or include(name)
        _check_not_through_link(archive, name, links)
        if member.isdev() or member.isfifo():
            kind = "fifo" if member.isfifo() else "device file"
            raise InputError(f"{archive}: member {member.name!r} is a {kind}; refusing to extract")
        if member.issym():
            target = member.linkname
            if posixpath.isabs(target) or not _inside(posixpath.join(posixpath.dirname(name), target)):
                raise InputError(
                    f"{archive}: member {member.name!r} is a symlink to {target!r}, outside the target folder"
                )
            links.add(name)
        elif member.islnk():
            try:
                target = _clean_name(archive, member.linkname)
            except InputError:
                raise InputError(
                    f"{archive}: member {member.name!r} is a hardlink to {member.linkname!r}, outside the target folder"
                ) from None
            if target not in files:
                raise InputError(
                    f"{archive}: member {member.name!r} is a hardlink to {member.linkname!r}, "
                    "which is not a regular file earlier in the archive"
                )
        elif member.isfile():
            total += member.size if wanted else 0
            if total > max_bytes:
                raise InputError(
                    f"{archive}: unpacked size exceeds the limit of {max_bytes} bytes (at member {member.name!r})"
                )
            files.add(name)
        elif not member.isdir():
            raise InputError(f"{archive}: member {member.name!r} has an unsupported type {member.type!r}")
        if name in links and not member.issym():
            raise InputError(f"{archive}: member {member.name!r} replaces a symlink of the same name")
        if wanted:
            selected.append((member, name))
    return selected


def _extract_tar(archive: Path, dest: Path, include: Callable[[str], bool] | None, max_bytes: int) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            selected = _check_tar(archive, tar, include, max_bytes)
            for member, name in selected:
                member.name = name
                if member.islnk():
                    member.linkname = _clean_name(archive, member.linkname)
                # The 'data' filter re-checks every path against the real file system (defence in depth).
                tar.extract(member, dest, filter="data")
    except tarfile.FilterError as err:
        raise InputError(f"{archive}: unsafe member refused by tarfile ({err})") from err
    except (tarfile.TarError, EOFError, OSError) as err:
        raise InputError(f"{archive}: cannot read tar archive ({err})") from err


def _extract_zip(archive: Path, dest: Path, include: Callable[[str], bool] | None, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            selected = []
            total = 0
            for info in zf.infolist():
                name = _clean_name(archive, info.filename)
                if not name:
                    continue
                mode = info.external_attr >> 16
                kind = stat.S_IFMT(mode)
                if kind and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    what = "symlink" if stat.S_ISLNK(mode) else "special file"
                    raise InputError(f"{archive}: member {info.filename!r} is a {what}; refusing to extract")
                if include is not None and not include(name):
                    continue
                total += info.file_size
                if total > max_bytes:
                    raise InputError(
                        f"{archive}: unpacked size exceeds the limit of {max_bytes} bytes (at member {info.filename!r})"
                    )
                selected.append((info, name))
            written = 0
            for info, name in selected:
                target = dest / name
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                # Count the bytes really written: a zip header can lie about sizes.
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise InputError(f"{archive}: unpacked size exceeds the limit of {max_bytes} bytes")
                        out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as err:
        raise InputError(f"{archive}: cannot read zip archive ({err})") from err


def extract_archive(
    archive: str | Path,
    dest: str | Path,
    *,
    include: Callable[[str], bool] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Extract `archive` (tar in any compression, or zip) into the new folder `dest`, atomically.

    include: optional predicate on the normalised member path ("a/b/c.png"); members it rejects are not written,
    but every member is checked: an archive with one hostile member is refused as a whole. Raises InputError naming the archive and member for anything unsafe; `dest` then does not exist.
    """
    archive = Path(archive)
    dest = Path(dest)
    if not archive.is_file():
        raise InputError(f"{archive}: archive not found")
    if zipfile.is_zipfile(archive):
        extractor = _extract_zip
    elif tarfile.is_tarfile(archive):
        extractor = _extract_tar
    else:
        raise InputError(f"{archive}: not a tar or zip archive")
    with atomic_dir(dest) as tmp:
        extractor(archive, tmp, include, max_bytes)
        _check_links_resolve_inside(archive, tmp)
    return dest


def _check_links_resolve_inside(archive: Path, root: Path) -> None:
    """A last check on the extracted tree: symlink chains can escape even when each link looks local."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if os.path.commonpath([real_root, real]) != real_root:
                    rel = os.path.relpath(path, root)
                    raise InputError(f"{archive}: member {rel!r} is a symlink resolving outside the target folder")
