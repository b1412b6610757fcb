"""The `download` stage: fetch one file named in params.yaml `data.sources.<name>` and verify its checksum.

Accepted locations:
  * https://...                          the normal case;
  * file:///abs/path or a plain path      a local mirror (relative paths are taken from the working directory);
  * http://127.0.0.1, localhost or [::1]  tests and mirrors on this machine; plain http to any other host is refused.
A download goes to `<out>.part`, resumes from it with an HTTP Range request after an interruption (also across
restarts), retries transient errors with exponential backoff, and is renamed to `<out>` only after its checksum matched.
Redirects are followed (mirrors use them); integrity rests on the checksum, which is why remote URLs need one.
A file that does not match is kept as `<out>.corrupt` for inspection.

Checksums: `sha256` is the one to record. Some sources publish only an MD5 (the ResNet-38 weights in ademxapp's
models/checksum.md5), so an entry may give `md5` instead or as well; every recorded checksum is checked, both
computed in one pass over the file. An MD5 guards against corruption and truncation, not against a deliberately
altered file, so an MD5-only download logs the file's sha256 for the user to record. A remote URL with neither
recorded is refused; for local files the computed sha256 is logged so that it can be recorded.
Only the standard library is used for HTTP.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from ppcseg.utils.errors import InputError

PARAMS_KEYS: tuple[str, ...] = ("data.sources.{source}",)
LOCAL_HTTP_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
RETRIES = 5
BACKOFF_S = 2.0
TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
log = logging.getLogger("ppcseg")


class _TransientError(Exception):
    """A network failure worth retrying (connection reset, timeout, 5xx, truncated body)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="name of an entry under data.sources in params.yaml")
    parser.add_argument("--out", required=True, type=Path, help="where the verified file is written")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    sources = params["data"]["sources"]
    key = f"data.sources.{args.source}"
    if args.source not in sources:
        raise InputError(f"{key}: no such source (known: {', '.join(sorted(sources))})")
    entry = sources[args.source] or {}
    download(entry.get("url"), args.out, sha256=entry.get("sha256"), md5=entry.get("md5"), key=key)


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


def _mismatches(path: Path, sha256: str | None, md5: str | None) -> tuple[str, list[str]]:
    """The file's sha256 and a description of every recorded checksum it does not match."""
    actual_sha256, actual_md5 = file_digests(path)
    wrong = []
    if sha256 is not None and actual_sha256 != sha256:
        wrong.append(f"expected sha256 {sha256}, got {actual_sha256}")
    if md5 is not None and actual_md5 != md5:
        wrong.append(f"expected md5 {md5}, got {actual_md5}")
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
    raise InputError(f"{key}.url: {url}: unsupported scheme '{parsed.scheme}' (use https://, file:// or a path)")


def download(
    url: str | None,
    out: str | Path,
    *,
    sha256: str | None,
    md5: str | None = None,
    key: str = "download",
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
    timeout_s: float = TIMEOUT_S,
) -> str:
    """Fetch `url` into `out`, verified against `sha256` and/or `md5`; returns the file's sha256.

    Every checksum given is checked; sha256 is the preferred one, md5 is for sources that publish nothing else.
    key names the params entry in error messages (e.g. data.sources.voc).
    """
    out = Path(out)
    if not url:
        raise InputError(f"{key}.url is not set: put a https:// URL, a file:// URL or a local path there")
    sha256 = _normalised(sha256, _SHA256, f"{key}.sha256", "a sha256 hex digest (64 hex characters)")
    md5 = _normalised(md5, _MD5, f"{key}.md5", "an md5 hex digest (32 hex characters)")
    local = local_source(url)
    if local is None:
        _check_network_url(url, key)
        if sha256 is None and md5 is None:
            raise InputError(
                f"{key}.sha256 is not recorded (nor {key}.md5): refusing to download {url} unverified. Fetch the "
                f"file once by hand, check it, and set {key}.sha256 to its `sha256sum` (or point {key}.url at the "
                "local file, which prints the checksum)"
            )
    elif not local.is_file():
        raise InputError(f"{key}.url: local file {local} not found")

    if (sha256 is not None or md5 is not None) and out.is_file():
        present_sha256, wrong = _mismatches(out, sha256, md5)
        if not wrong:
            log.info("%s: %s already present and verified", key, out)
            return present_sha256

    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    if local is not None:
        _copy_local(local, part)
    else:
        _fetch_with_retries(url, part, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s)

    actual, wrong = _mismatches(part, sha256, md5)
    if wrong:
        corrupt = out.with_name(out.name + ".corrupt")
        os.replace(part, corrupt)
        raise InputError(f"{url}: checksum mismatch: {'; '.join(wrong)}; the download was kept as {corrupt}")
    with open(part, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(part, out)
    if sha256 is None and md5 is None:
        log.warning("%s: no checksum recorded; %s has sha256 %s: record it as %s.sha256", key, out, actual, key)
    elif sha256 is None:
        log.warning(
            "%s: %s verified by md5 only; it has sha256 %s: record it as %s.sha256 (stronger than md5)",
            key,
            out,
            actual,
            key,
        )
    else:
        log.info("%s: %s verified (sha256 %s)", key, out, actual)
    return actual


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


def _fetch_with_retries(url: str, part: Path, *, retries: int, backoff_s: float, timeout_s: float) -> None:
    for attempt in range(retries + 1):
        try:
            _fetch_http(url, part, timeout_s)
            return
        except _TransientError as err:
            if attempt == retries:
                raise InputError(
                    f"{url}: download failed after {retries + 1} attempts ({err}); rerun to resume"
                ) from err
            delay = backoff_s * 2**attempt
            log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url, err, delay, attempt + 2, retries + 1)
            time.sleep(delay)


def _fetch_http(url: str, part: Path, timeout_s: float) -> None:
    """One attempt: request the rest of the file after what `part` already holds and append it."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "ppcseg-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
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
