"""The download stage: local files and a local HTTP server, resume, retries, checksum refusal."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path

import pytest

from ppcseg.data import download as dl
from ppcseg.utils.errors import InputError

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"retries": 3, "backoff_s": 0.01, "timeout_s": 5.0}


@pytest.fixture
def payload_file(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "archive.tar"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_file_url_and_plain_path(tmp_path: Path, payload_file: Path) -> None:
    out = tmp_path / "dl" / "a.tar"
    assert dl.download(payload_file.as_uri(), out, sha256=SHA) == SHA
    assert out.read_bytes() == PAYLOAD
    out2 = tmp_path / "dl" / "b.tar"
    dl.download(str(payload_file), out2, sha256=SHA.upper())
    assert out2.read_bytes() == PAYLOAD
    assert not list((tmp_path / "dl").glob("*.part"))


def test_local_without_checksum_logs_it(tmp_path: Path, payload_file: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ppcseg"):
        assert dl.download(payload_file.as_uri(), tmp_path / "a.tar", sha256=None, key="data.sources.sbd") == SHA
    assert SHA in caplog.text and "data.sources.sbd.sha256" in caplog.text


@pytest.mark.parametrize(
    "url,sha,words",
    [
        ("https://example.org/x.tgz", None, "data.sources.x.sha256 is not recorded"),
        ("http://example.org/x.tgz", SHA, "plain http is only allowed"),
        ("ftp://example.org/x.tgz", SHA, "unsupported scheme 'ftp'"),
        (None, SHA, "data.sources.x.url is not set"),
        ("https://example.org/x.tgz", "abc", "is not a sha256"),
        ("/nonexistent/x.tgz", SHA, "not found"),
    ],
)
def test_refused_before_any_network(tmp_path: Path, url, sha, words: str) -> None:
    with pytest.raises(InputError, match=words):
        dl.download(url, tmp_path / "x.tgz", sha256=sha, key="data.sources.x", **FAST)
    assert not list(tmp_path.iterdir())


def test_http_good_and_skip_when_present(tmp_path: Path, http_server, caplog) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    out = tmp_path / "a.tar"
    dl.download(f"{http_server.base}/a.tar", out, sha256=SHA, **FAST)
    assert out.read_bytes() == PAYLOAD
    with caplog.at_level(logging.INFO, logger="ppcseg"):
        dl.download(f"{http_server.base}/a.tar", out, sha256=SHA, **FAST)
    assert len(http_server.requests) == 1 and "already present" in caplog.text


def test_http_resume_from_partial_file(tmp_path: Path, http_server) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    out = tmp_path / "a.tar"
    (tmp_path / "a.tar.part").write_bytes(PAYLOAD[:123_456])  # left by a killed run
    dl.download(f"{http_server.base}/a.tar", out, sha256=SHA, **FAST)
    assert out.read_bytes() == PAYLOAD
    assert [r["range"] for r in http_server.requests] == ["bytes=123456-"]


def test_http_connection_lost_then_resumed(tmp_path: Path, http_server) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    http_server.truncate = [100_000, 50_000]  # two interrupted responses, then a full one
    out = tmp_path / "a.tar"
    dl.download(f"{http_server.base}/a.tar", out, sha256=SHA, **FAST)
    assert out.read_bytes() == PAYLOAD
    assert [r["range"] for r in http_server.requests] == ["", "bytes=100000-", "bytes=150000-"]


def test_http_retries_server_errors(tmp_path: Path, http_server) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    http_server.fail = [1, 1]
    dl.download(f"{http_server.base}/a.tar", tmp_path / "a.tar", sha256=SHA, **FAST)
    assert len(http_server.requests) == 3


def test_http_gives_up_after_retries(tmp_path: Path, http_server) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    http_server.fail = [1] * 10
    with pytest.raises(InputError, match="failed after 4 attempts.*HTTP 500"):
        dl.download(f"{http_server.base}/a.tar", tmp_path / "a.tar", sha256=SHA, **FAST)
    assert not (tmp_path / "a.tar").exists()


def test_http_not_found_is_not_retried(tmp_path: Path, http_server) -> None:
    with pytest.raises(InputError, match="HTTP 404"):
        dl.download(f"{http_server.base}/missing.tar", tmp_path / "a.tar", sha256=SHA, **FAST)
    assert len(http_server.requests) == 1


def test_http_server_ignoring_range_restarts(tmp_path: Path, http_server) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    http_server.ignore_range = True
    (tmp_path / "a.tar.part").write_bytes(b"garbage" * 1000)
    dl.download(f"{http_server.base}/a.tar", tmp_path / "a.tar", sha256=SHA, **FAST)
    assert (tmp_path / "a.tar").read_bytes() == PAYLOAD


def test_http_complete_partial_file(tmp_path: Path, http_server) -> None:
    """A part file holding everything (killed before the rename): 416 from the server, then verified."""
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    (tmp_path / "a.tar.part").write_bytes(PAYLOAD)
    dl.download(f"{http_server.base}/a.tar", tmp_path / "a.tar", sha256=SHA, **FAST)
    assert (tmp_path / "a.tar").read_bytes() == PAYLOAD


@pytest.mark.parametrize("via", ["http", "file"])
def test_wrong_checksum_kept_aside(tmp_path: Path, http_server, payload_file: Path, via: str) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    url = f"{http_server.base}/a.tar" if via == "http" else payload_file.as_uri()
    wrong = "0" * 64
    out = tmp_path / "a.tar"
    with pytest.raises(InputError) as err:
        dl.download(url, out, sha256=wrong, **FAST)
    message = str(err.value)
    assert url in message and wrong in message and SHA in message
    assert not out.exists() and not (tmp_path / "a.tar.part").exists()
    assert (tmp_path / "a.tar.corrupt").read_bytes() == PAYLOAD


def test_stage_run_reads_params(tmp_path: Path, payload_file: Path) -> None:
    params = {"data": {"sources": {"voc": {"url": payload_file.as_uri(), "sha256": SHA}}}}
    out = tmp_path / "voc.tar"
    dl.run(argparse.Namespace(source="voc", out=out, threads=None), params)
    assert out.read_bytes() == PAYLOAD
    with pytest.raises(InputError, match="data.sources.sbd: no such source"):
        dl.run(argparse.Namespace(source="sbd", out=out, threads=None), params)
