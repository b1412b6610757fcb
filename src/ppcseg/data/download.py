"""The `download` stage: fetch one source and verify its checksum. A source is an entry `data.sources.<name>` of
params.yaml (`--source <name>`), or the authors' released checkpoint of a stage, `<stage>.released` (`--source
cam.released`; docs/released-models.md), which `ppcseg convert-released` then turns into the stage's checkpoint.

A source's `url` is one location or a list of mirrors, tried in order until one gives a verified file. Locations:
  * https://...                          the normal case;
  * file:///abs/path or a plain path      a local mirror (relative paths are taken from the working directory);
  * http://127.0.0.1, localhost or [::1]  tests and mirrors on this machine; plain http to any other host is refused;
  * gdrive:<file id>, or a Google Drive share link (drive.google.com/file/d/<id>/view, open?id=, uc?id=): gdown's
    parser reads the link and Drive's "can't scan this file for viruses" confirmation page (the confirm/uuid form);
  * a Dropbox share link (www.dropbox.com/s/... or /scl/fi/...): fetched as its ?dl=1 direct download;
  * a OneDrive share link (1drv.ms/..., onedrive.live.com/...): fetched through the OneDrive shares API, whose
    share id is "u!" + the link in unpadded base64url.
A download goes to `<out>.part`, resumes from it with an HTTP Range request after an interruption (also across
restarts, from the same location only: `<out>.part.from` names it), retries transient errors with exponential backoff,
and is renamed to `<out>` only after its checksum matched. Redirects are followed (mirrors and share hosts use them);
integrity rests on the checksum. A file that does not match is kept as `<out>.corrupt` for inspection, and the next
location is tried; so is one that answers 404 or keeps timing out.

Checksums: a published `sha256` (or, where the publisher gives only that, `md5`: the ResNet-38 weights in ademxapp's
models/checksum.md5) is recorded in params.yaml and checked. Where no SHA-256 is published, the first verified
download records the file's SHA-256 in the lock file (`sources.lock.yaml`, git-tracked) and says so in the log: one
record per source and URL, `{source: {url: {sha256}}}`, so the files of every route live side by side, and a source
pointed at another URL is another file (downloaded and recorded, not taken for the file already there). A record
applies to every download that lists its URL, from any mirror listed beside it, on any machine; a mismatch is refused
naming the file and both hashes. Records are keyed only by locations that mean the same on every machine: a file
fetched from a local mirror (a path, file:// or a server on this machine) is recorded under the first public location
listed with it, and a source with none is not recorded. Only the standard library is used for HTTP; gdown only reads
Drive's pages.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import http.client
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import yaml
from tqdm import tqdm

from ppcseg.utils.errors import InputError
from ppcseg.utils.io import write_text

# `{key}`: the params key of the source the rule downloads (data.sources.<name> or <stage>.released).
PARAMS_KEYS: tuple[str, ...] = ("{key}",)
RELEASED_STAGES: tuple[str, ...] = ("cam", "affinity", "segmentation")
LOCAL_HTTP_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
RETRIES = 5
BACKOFF_S = 2.0
TIMEOUT_S = 60.0
LOCK_FILE = Path("sources.lock.yaml")
GDRIVE_HOSTS = frozenset({"drive.google.com", "docs.google.com"})
DROPBOX_HOSTS = frozenset({"www.dropbox.com", "dropbox.com"})
ONEDRIVE_HOSTS = frozenset({"1drv.ms", "onedrive.live.com"})
GDRIVE_DOWNLOAD = "https://drive.google.com/uc"
ONEDRIVE_SHARES = "https://api.onedrive.com/v1.0/shares"
# Hosts answered at another base URL. Empty in use; the tests point the share hosts at a server on 127.0.0.1.
HOST_OVERRIDES: dict[str, str] = {}
_HEADERS = {"User-Agent": "ppcseg-download"}
_PAGE_LIMIT = 4 << 20  # bytes of a Drive HTML page read: the confirmation page is a few kB
_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_DRIVE_ID = re.compile(r"[-A-Za-z0-9_]{10,}")  # fullmatch: `$` would pass a trailing newline, \w any letter
LOCK_HEADER = """\
# SHA-256 of downloaded files whose publisher gives none (data.sources.<name> or <stage>.released without sha256), one
# record per source and URL, written by the first verified download (`ppcseg download`).
# Every later download that lists the URL, on any machine and from any mirror listed beside it, must match it. Commit
# this file; to accept a new version of a file on purpose, delete its record and download again.
"""
log = logging.getLogger("ppcseg")
T = TypeVar("T")


class _TransientError(Exception):
    """A network failure worth retrying (connection reset, timeout, 5xx, truncated body)."""


@dataclass(frozen=True)
class Location:
    """One place a source can come from: `given` as written in params, fetched as `kind` from `target`.

    kind is "local" (target: a path), "http" (target: the URL to fetch) or "gdrive" (target: the Drive file id).
    """

    given: str
    kind: str
    target: str

    @property
    def portable(self) -> bool:
        """Whether the location means the same file on every machine and clone: not a local path, file:// URL or
        server on this machine. Only such a location keys a lock record."""
        if self.kind == "local":
            return False
        return self.kind == "gdrive" or urllib.parse.urlparse(self.given).hostname not in LOCAL_HTTP_HOSTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        required=True,
        help="an entry under data.sources in params.yaml, or a released checkpoint <stage>.released",
    )
    parser.add_argument("--out", required=True, type=Path, help="where the verified file is written")
    parser.add_argument(
        "--lock-file",
        type=Path,
        default=LOCK_FILE,
        help=f"SHA-256 records of sources without a published one (git-tracked; default {LOCK_FILE})",
    )


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    key, entry = source_entry(params, args.source)
    download(
        entry.get("url"),
        args.out,
        sha256=entry.get("sha256"),
        md5=entry.get("md5"),
        key=key,
        lock_file=args.lock_file,
        lock_name=args.source.replace(".", "_"),  # cam.released is recorded as cam_released
    )


def source_entry(params: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The params key and entry of source `name`: `<stage>.released` is a stage's released checkpoint, any other
    name an entry of data.sources."""
    stage, dot, rest = name.partition(".")
    if dot:
        if rest != "released" or stage not in RELEASED_STAGES:
            raise InputError(
                f"--source {name}: not a source; name an entry of data.sources or a released checkpoint "
                f"({', '.join(f'{s}.released' for s in RELEASED_STAGES)})"
            )
        entry = params[stage].get("released")
        if not entry:
            raise InputError(f"{name} is not set: give url, sha256 (or md5) and layout of the released file")
        return name, entry
    sources = params["data"]["sources"]
    key = f"data.sources.{name}"
    if name not in sources:
        raise InputError(f"{key}: no such source (known: {', '.join(sorted(sources))})")
    return key, sources[name] or {}


def sha256_file(path: str | Path) -> str:
    return file_digests(path)[0]


def file_digests(path: str | Path) -> tuple[str, str]:
    """The (sha256, md5) hex digests of a file, read once."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def _normalised(value: str | None, pattern: re.Pattern[str], field: str, what: str) -> str | None:
    if value is None:
        return None
    value = str(value).lower()
    if not pattern.match(value):
        raise InputError(f"{field}: {value!r} is not {what}")
    return value


@dataclass(frozen=True)
class _Expected:
    """Every checksum a download must match: params' sha256 and md5, and the lock file's records of its locations."""

    sha256: str | None
    md5: str | None
    locked: tuple[tuple[str, str], ...] = ()  # (sha256, where it was recorded)

    def __bool__(self) -> bool:
        return any((self.sha256, self.md5, self.locked))

    def mismatches(self, path: Path) -> tuple[str, list[str]]:
        """The file's sha256 and a description of every recorded checksum it does not match."""
        actual_sha256, actual_md5 = file_digests(path)
        wrong = []
        if self.sha256 is not None and actual_sha256 != self.sha256:
            wrong.append(f"expected sha256 {self.sha256}, got {actual_sha256}")
        if self.md5 is not None and actual_md5 != self.md5:
            wrong.append(f"expected md5 {self.md5}, got {actual_md5}")
        for locked, note in self.locked:
            if actual_sha256 != locked:
                wrong.append(f"expected sha256 {locked} ({note}), got {actual_sha256}")
        return actual_sha256, wrong


def local_source(url: str) -> Path | None:
    """The local file a URL names (file:// or a plain path), or None for a network URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"{url}: file:// URLs must name a local file (file:///path)")
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "":
        return Path(url)
    return None


def _check_network_url(url: str, key: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "https":
        return
    if parsed.scheme == "http" and parsed.hostname in LOCAL_HTTP_HOSTS:
        return
    if parsed.scheme == "http":
        raise InputError(f"{key}.url: {url}: plain http is only allowed to 127.0.0.1/localhost; use https://")
    raise InputError(
        f"{key}.url: {url}: unsupported scheme '{parsed.scheme}' (use https://, gdrive:<id>, file:// or a path)"
    )


def dropbox_direct_url(url: str) -> str:
    """A Dropbox share link as its direct download: the same link with dl=1 instead of the preview page's dl=0."""
    parsed = urllib.parse.urlparse(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True) if k not in ("dl", "raw")]
    return urllib.parse.urlunparse(parsed._replace(query=urllib.parse.urlencode([*query, ("dl", "1")])))


def onedrive_direct_url(url: str) -> str:
    """A OneDrive share link as the shares API's content URL, which anonymous clients may fetch.

    The share id is "u!" + the link in unpadded base64url ('=' stripped, '+' -> '-', '/' -> '_'), as Microsoft's
    OneDrive API documentation ("shares: get", Encoding sharing URLs) specifies.
    """
    token = base64.urlsafe_b64encode(url.encode()).decode("ascii").rstrip("=")
    return f"{ONEDRIVE_SHARES}/u!{token}/root/content"


def parse_location(given: str, key: str) -> Location:
    """How a location from params is fetched; refuses an unsupported one before any network access."""
    given = str(given)
    if given.startswith("gdrive:"):
        file_id = given.removeprefix("gdrive:")
        if not _DRIVE_ID.fullmatch(file_id):
            raise InputError(f"{key}.url: {given!r}: not a Google Drive file id")
        return Location(given, "gdrive", file_id)
    local = local_source(given)
    if local is not None:
        return Location(given, "local", str(local))
    parsed = urllib.parse.urlparse(given)
    host = (parsed.hostname or "").lower()
    if parsed.scheme == "https" and host in GDRIVE_HOSTS:
        from gdown.parse_url import parse_url

        file_id, _ = parse_url(given)
        if not file_id:
            raise InputError(f"{key}.url: {given}: no Google Drive file id in this link (only files can be fetched)")
        if not _DRIVE_ID.fullmatch(file_id):  # gdown takes any ?id= value, and any text in /document/d/<...>/edit
            raise InputError(f"{key}.url: {given}: {file_id!r} is not a Google Drive file id")
        return Location(given, "gdrive", file_id)
    if parsed.scheme == "https" and host in DROPBOX_HOSTS:
        return Location(given, "http", dropbox_direct_url(given))
    if parsed.scheme == "https" and host in ONEDRIVE_HOSTS:
        return Location(given, "http", onedrive_direct_url(given))
    _check_network_url(given, key)
    return Location(given, "http", given)


def read_lock(path: Path) -> dict[str, dict[str, dict[str, str]]]:
    """The lock file's records, {source: {url: {sha256}}}; {} when there is no lock file yet.

    A record of the first format, {source: {sha256, location}}, is read as the record of its location.
    """
    from ppcseg.config import load_yaml

    if not path.is_file():
        return {}
    data = load_yaml(path, "lock file", InputError) or {}
    shape = "{<source>: {<url>: {sha256: <64 lowercase hex digits>}}}"
    if not isinstance(data, dict):
        raise InputError(f"{path}: must be a mapping {shape}, got {type(data).__name__}")
    records: dict[str, dict[str, dict[str, str]]] = {}
    for name, entry in data.items():
        if isinstance(entry, dict) and set(entry) == {"sha256", "location"}:
            entry = {entry["location"]: {"sha256": entry["sha256"]}}
        if not isinstance(entry, dict) or not entry:
            raise InputError(f"{path}: entry {name!r} must be {shape}")
        for url, record in entry.items():
            if not isinstance(url, str) or not isinstance(record, dict) or set(record) != {"sha256"}:
                raise InputError(f"{path}: entry {name!r}, {url!r}: must be {{sha256: <64 lowercase hex digits>}}")
            if not _SHA256.match(str(record["sha256"])):
                raise InputError(
                    f"{path}: entry {name!r}, {url!r}: sha256 {record['sha256']!r} is not 64 lowercase hex"
                )
        records[name] = entry
    return records


def _record(path: Path, name: str, url: str, sha256: str) -> None:
    """Add the record of source `name` at `url` to the lock file; another download recording it meanwhile must
    agree. The file is rewritten atomically: an interrupted write leaves the lock as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # parallel download jobs rewrite the same file
        entries = read_lock(path)
        found = entries.get(name, {}).get(url)
        if found is not None:
            if found["sha256"] != sha256:
                raise InputError(
                    f"{path}: {name} from {url} was recorded meanwhile with sha256 {found['sha256']}, this download "
                    f"has {sha256}"
                )
            return
        entries.setdefault(name, {})[url] = {"sha256": sha256}
        write_text(path, LOCK_HEADER + yaml.safe_dump(entries, sort_keys=True, width=1000))
    finally:
        os.close(folder)  # releases the flock


def download(
    url: str | list[str] | None,
    out: str | Path,
    *,
    sha256: str | None,
    md5: str | None = None,
    key: str = "download",
    lock_file: str | Path | None = None,
    lock_name: str | None = None,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
    timeout_s: float = TIMEOUT_S,
) -> str:
    """Fetch the first location of `url` (one or a list of mirrors) that gives a verified file into `out`.

    Returns the file's sha256. Every checksum given is checked; sha256 is the preferred one, md5 is for sources
    that publish nothing else. With a lock_file, a source without a sha256 in params must match the lock's records
    of the locations given, and its first download records one. key names the params entry in messages (e.g.
    data.sources.voc); lock_name (default: key's last part) names the source in the lock file.
    """
    out = Path(out)
    given = [url] if isinstance(url, str) else list(url or [])
    if not given:
        raise InputError(
            f"{key}.url is not set: put a https:// URL, gdrive:<id>, a share link, a file:// URL or a local path there"
        )
    sha256 = _normalised(sha256, _SHA256, f"{key}.sha256", "a sha256 hex digest (64 hex characters)")
    md5 = _normalised(md5, _MD5, f"{key}.md5", "an md5 hex digest (32 hex characters)")
    locations = [parse_location(g, key) for g in given]
    name = lock_name or key.rpartition(".")[2]
    lock_path = Path(lock_file) if lock_file is not None else None
    # The lock's records of this file: those of the source at any location given (the list names mirrors of one
    # file). Another location is another file (a route's released model and another's live side by side).
    recorded = read_lock(lock_path).get(name, {}) if lock_path is not None else {}
    matching = [(loc.given, recorded[loc.given]["sha256"]) for loc in locations if loc.given in recorded]
    locked = tuple((sha, f"recorded in {lock_path} for {url}") for url, sha in matching)
    expected = _Expected(sha256, md5, locked)
    portable = [loc for loc in locations if loc.portable]
    if not expected and (lock_path is None or not portable) and any(loc.kind != "local" for loc in locations):
        # Without a lock file, or with only servers on this machine (which a lock shared by clones cannot name).
        unlocked = f" and {lock_path} records no server on this machine" if lock_path is not None else ""
        raise InputError(
            f"{key}.sha256 is not recorded (nor {key}.md5){unlocked}: refusing to download {given[0]} unverified. "
            f"Fetch the file once by hand, check it, and set {key}.sha256 to its `sha256sum` (or point {key}.url at "
            "the local file, which prints the checksum)"
        )

    if expected and out.is_file():
        present_sha256, wrong = expected.mismatches(out)
        if not wrong:
            log.info("%s: %s already present and verified", key, out)
            return present_sha256

    failures: list[InputError] = []
    for index, location in enumerate(locations):
        try:
            actual = _fetch_verified(location, out, expected, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s)
            break
        except InputError as err:
            failures.append(err)
            if index + 1 < len(locations):
                log.warning("%s: %s; trying the next location, %s", key, err, locations[index + 1].given)
    else:
        if len(failures) == 1:
            raise failures[0]
        raise InputError(f"{key}: no location gave a verified file: " + "; ".join(map(str, failures)))

    if sha256 is None and not matching and lock_path is not None and portable:
        # Keyed by where the file came from, or by the first portable location listed when it came from a local
        # mirror: a path on this machine would mean nothing in another clone.
        url = location.given if location.portable else portable[0].given
        _record(lock_path, name, url, actual)
        log.warning(
            "%s: %s has sha256 %s (%s); recorded for %s in %s: commit it, every later download from there must "
            "match it",
            key,
            out,
            actual,
            f"md5 {md5} verified" if md5 else "no published checksum to verify it against",
            url if url == location.given else f"{url} (fetched from the mirror {location.given})",
            lock_path,
        )
    elif not expected:
        log.warning("%s: no checksum recorded; %s has sha256 %s: record it as %s.sha256", key, out, actual, key)
    elif sha256 is None and not matching:
        log.warning(
            "%s: %s verified by md5 only; it has sha256 %s: record it as %s.sha256 (stronger than md5)",
            key,
            out,
            actual,
            key,
        )
    else:
        log.info("%s: %s verified (sha256 %s) from %s", key, out, actual, location.given)
    return actual


def _fetch_verified(
    location: Location, out: Path, expected: _Expected, *, retries: int, backoff_s: float, timeout_s: float
) -> str:
    """Fetch one location into `<out>.part`, check it and rename it to `out`; returns its sha256."""
    if location.kind == "local" and Path(location.target).is_dir():
        raise InputError(f"{location.given}: {location.target} is a folder; the URL must name the file itself")
    if location.kind == "local" and not Path(location.target).is_file():
        raise InputError(f"{location.given}: local file {location.target} not found")
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    origin = out.with_name(out.name + ".part.from")
    if part.exists() and origin.is_file() and origin.read_text() != location.given:
        part.unlink()  # bytes from another location are never glued to these: it may serve another version
    if location.kind == "local":
        _copy_local(Path(location.target), part)
    else:
        write_text(origin, location.given)
        if location.kind == "gdrive":
            url = _retrying(location.given, lambda: _gdrive_url(location.target, timeout_s), retries, backoff_s)
        else:
            url = location.target
        _retrying(location.given, lambda: _fetch_http(url, part, timeout_s), retries, backoff_s)

    actual, wrong = expected.mismatches(part)
    if wrong:
        corrupt = out.with_name(out.name + ".corrupt")
        os.replace(part, corrupt)
        origin.unlink(missing_ok=True)
        raise InputError(f"{location.given}: checksum mismatch: {'; '.join(wrong)}; the download was kept as {corrupt}")
    with open(part, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(part, out)
    origin.unlink(missing_ok=True)
    return actual


def _via(url: str) -> str:
    """The URL to request: `url`, or on the base of HOST_OVERRIDES when its host is listed there."""
    parsed = urllib.parse.urlparse(url)
    base = HOST_OVERRIDES.get(parsed.hostname or "")
    if base is None:
        return url
    override = urllib.parse.urlparse(base)
    return urllib.parse.urlunparse(parsed._replace(scheme=override.scheme, netloc=override.netloc))


def _gdrive_url(file_id: str, timeout_s: float) -> str:
    """The direct download URL of a Drive file.

    Drive serves a small file at once (after redirects) and answers a large one, which it cannot scan for viruses,
    with an HTML page whose form carries the confirm and uuid fields; gdown's parser reads that page.
    """
    url = f"{GDRIVE_DOWNLOAD}?{urllib.parse.urlencode({'id': file_id, 'export': 'download'})}"
    try:
        with urllib.request.urlopen(urllib.request.Request(_via(url), headers=_HEADERS), timeout=timeout_s) as response:
            if response.headers.get_content_type() != "text/html":
                return response.url  # the file itself: fetch it again from where the redirects ended
            page = response.read(_PAGE_LIMIT).decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        if err.code in (408, 429) or err.code >= 500:
            raise _TransientError(f"HTTP {err.code} {err.reason}") from err
        raise InputError(f"Google Drive file {file_id}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _TransientError(str(err)) from err

    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    try:
        direct = get_url_from_gdrive_confirmation(page)
    except FileURLRetrievalError as err:  # quota exceeded, not shared, deleted
        raise InputError(f"Google Drive file {file_id}: {' '.join(str(err).split())}") from err
    except (KeyError, AssertionError, ValueError, TypeError) as err:
        # The parser indexes the form's attributes (action, name, value): a page Drive changed ends in a KeyError.
        raise InputError(
            f"Google Drive file {file_id}: the download confirmation page has no usable form ({type(err).__name__}: "
            f"{' '.join(str(err).split())}); Drive may have changed its page, fetch the file in a browser"
        ) from err
    _check_network_url(direct, f"Google Drive file {file_id}")
    return direct


class _ByteProgress:
    """A byte-count progress bar on a terminal, a log line every 10 s otherwise."""

    def __init__(self, desc: str, total: int | None, initial: int) -> None:
        self.desc, self.total, self.done = desc, total, initial
        self.bar = (
            tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=desc) if sys.stderr.isatty() else None
        )
        self.start = self.last = time.monotonic()
        self.start_bytes = initial

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= 10.0:
            rate = (self.done - self.start_bytes) / max(now - self.start, 1e-9)
            of = f" of {self.total / 1e6:.1f}" if self.total else ""
            log.info("%s: %.1f%s MB, %.2f MB/s", self.desc, self.done / 1e6, of, rate / 1e6)
            self.last = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _copy_stream(src: BinaryIO, dst: BinaryIO, progress: _ByteProgress) -> int:
    written = 0
    while chunk := src.read(_CHUNK):
        dst.write(chunk)
        written += len(chunk)
        progress.update(len(chunk))
    return written


def _copy_local(source: Path, part: Path) -> None:
    """Copy a local file from scratch: resuming buys nothing locally and could glue two versions together."""
    progress = _ByteProgress(source.name, source.stat().st_size, 0)
    try:
        with open(source, "rb") as src, open(part, "wb") as dst:
            _copy_stream(src, dst, progress)
    finally:
        progress.close()


def _retrying(what: str, attempt: Callable[[], T], retries: int, backoff_s: float) -> T:
    """Run `attempt`, retrying transient network errors with exponential backoff."""
    for number in range(retries + 1):
        try:
            return attempt()
        except _TransientError as err:
            if number == retries:
                raise InputError(
                    f"{what}: download failed after {retries + 1} attempts ({err}); rerun to resume"
                ) from err
            delay = backoff_s * 2**number
            log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", what, err, delay, number + 2, retries + 1)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _fetch_http(url: str, part: Path, timeout_s: float) -> None:
    """One attempt: request the rest of the file after what `part` already holds and append it."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = dict(_HEADERS)
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(_via(url), headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Range not satisfiable: the part is complete if the server's size equals it; else start over.
            total = _content_range_total(err.headers.get("Content-Range", ""))
            if total == offset:
                return
            part.unlink()
            raise _TransientError(f"HTTP 416 with a {offset}-byte partial file; starting over") from err
        if err.code in (408, 429) or err.code >= 500:
            raise _TransientError(f"HTTP {err.code} {err.reason}") from err
        raise InputError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _TransientError(str(err)) from err

    with response:
        if offset and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink()
                raise _TransientError(f"unexpected Content-Range {content_range!r}; starting over")
            total = _content_range_total(content_range)
        else:
            offset = 0  # the server ignored the Range header: the body is the whole file
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        progress = _ByteProgress(Path(urllib.parse.urlparse(url).path).name or url, total, offset)
        try:
            with open(part, "ab" if offset else "wb") as dst:
                written = _copy_stream(response, dst, progress)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
            raise _TransientError(f"connection lost after {part.stat().st_size} bytes ({err!r})") from err
        finally:
            progress.close()
    if total is not None and offset + written < total:
        raise _TransientError(f"connection closed after {offset + written} of {total} bytes")


def _content_range_total(content_range: str) -> int | None:
    """The total size from a Content-Range header ('bytes 0-9/100' or 'bytes */100')."""
    _, _, total = content_range.rpartition("/")
    return int(total) if total.isdigit() else None
