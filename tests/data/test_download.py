"""The download stage: local files and a local HTTP server, resume, retries, checksum refusal."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from pathlib import Path

import pytest

from ppcseg.config import load_params
from ppcseg.data import download as dl
from ppcseg.utils.errors import InputError

REPO = Path(__file__).resolve().parents[2]

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
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


def test_local_without_checksum_logs_it(tmp_path: Path, payload_file: Path, logs) -> None:
    assert dl.download(payload_file.as_uri(), tmp_path / "a.tar", sha256=None, key="data.sources.sbd") == SHA
    assert SHA in logs.text and "data.sources.sbd.sha256" in logs.text


@pytest.mark.parametrize(
    "url,sha,words",
    [
        ("https://example.org/x.tgz", None, "data.sources.x.sha256 is not recorded"),
        ("http://example.org/x.tgz", SHA, "plain http is only allowed"),
        ("ftp://example.org/x.tgz", SHA, "unsupported scheme 'ftp'"),
        (None, SHA, "data.sources.x.url is not set"),
        ("https://example.org/x.tgz", "abc", "is not a sha256"),
        ("https://example.org/x.tgz", "0" * 32, "is not a sha256"),  # an md5 given as sha256
        ("/nonexistent/x.tgz", SHA, "not found"),
    ],
)
def test_refused_before_any_network(tmp_path: Path, url, sha, words: str) -> None:
    with pytest.raises(InputError, match=words):
        dl.download(url, tmp_path / "x.tgz", sha256=sha, key="data.sources.x", **FAST)
    assert not list(tmp_path.iterdir())


def test_http_good_and_skip_when_present(tmp_path: Path, http_server, logs) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    out = tmp_path / "a.tar"
    dl.download(f"{http_server.base}/a.tar", out, sha256=SHA, **FAST)
    assert out.read_bytes() == PAYLOAD
    dl.download(f"{http_server.base}/a.tar", out, sha256=SHA, **FAST)
    assert len(http_server.requests) == 1 and "already present" in logs.text


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
    dl.run(argparse.Namespace(source="voc", out=out, threads=None, lock_file=None), params)
    assert out.read_bytes() == PAYLOAD
    with pytest.raises(InputError, match="data.sources.sbd: no such source"):
        dl.run(argparse.Namespace(source="sbd", out=out, threads=None, lock_file=None), params)


# md5: for sources that publish nothing stronger (ademxapp's ResNet-38 weights); sha256 stays preferred.


def test_http_md5_only_verifies_and_logs_sha256(tmp_path: Path, http_server, logs) -> None:
    (http_server.root / "a.params").write_bytes(PAYLOAD)
    out = tmp_path / "a.params"
    got = dl.download(f"{http_server.base}/a.params", out, sha256=None, md5=MD5.upper(), key="data.sources.r", **FAST)
    assert got == SHA and out.read_bytes() == PAYLOAD
    assert "verified by md5 only" in logs.text and SHA in logs.text and "data.sources.r.sha256" in logs.text
    logs.messages.clear()
    assert dl.download(f"{http_server.base}/a.params", out, sha256=None, md5=MD5, **FAST) == SHA
    assert len(http_server.requests) == 1 and "already present" in logs.text


def test_present_file_with_wrong_md5_is_fetched_again(tmp_path: Path, http_server) -> None:
    (http_server.root / "a.params").write_bytes(PAYLOAD)
    out = tmp_path / "a.params"
    out.write_bytes(b"stale")
    dl.download(f"{http_server.base}/a.params", out, sha256=None, md5=MD5, **FAST)
    assert out.read_bytes() == PAYLOAD and len(http_server.requests) == 1


@pytest.mark.parametrize("via", ["http", "file"])
@pytest.mark.parametrize(
    "sha,md5,wrong",
    [(None, "0" * 32, "md5"), (SHA, "0" * 32, "md5"), ("0" * 64, MD5, "sha256")],
    ids=["md5-only", "sha256-right-md5-wrong", "sha256-wrong-md5-right"],
)
def test_every_recorded_checksum_is_checked(
    tmp_path: Path, http_server, payload_file: Path, via: str, sha, md5, wrong: str
) -> None:
    (http_server.root / "a.tar").write_bytes(PAYLOAD)
    url = f"{http_server.base}/a.tar" if via == "http" else payload_file.as_uri()
    out = tmp_path / "a.tar"
    with pytest.raises(InputError, match=f"checksum mismatch: expected {wrong} 0+, got") as err:
        dl.download(url, out, sha256=sha, md5=md5, **FAST)
    actual = SHA if wrong == "sha256" else MD5
    assert actual in str(err.value) and url in str(err.value)
    assert not out.exists() and not (tmp_path / "a.tar.part").exists()
    assert (tmp_path / "a.tar.corrupt").read_bytes() == PAYLOAD


@pytest.mark.parametrize("md5", ["abc", "0" * 64, "g" * 32])
def test_malformed_md5_refused_before_any_network(tmp_path: Path, http_server, md5: str) -> None:
    out = tmp_path / "dl" / "a.tar"
    with pytest.raises(InputError, match="data.sources.x.md5: .* is not an md5"):
        dl.download(f"{http_server.base}/a.tar", out, sha256=None, md5=md5, key="data.sources.x")
    assert not http_server.requests and not out.parent.exists()


def test_stage_run_passes_md5(tmp_path: Path, http_server) -> None:
    (http_server.root / "w.params").write_bytes(PAYLOAD)
    url = f"{http_server.base}/w.params"
    out = tmp_path / "w.params"
    dl.run(
        argparse.Namespace(source="w", out=out, lock_file=None),
        {"data": {"sources": {"w": {"url": url, "sha256": None, "md5": MD5}}}},
    )
    assert out.read_bytes() == PAYLOAD
    bad = {"data": {"sources": {"w": {"url": url, "sha256": None, "md5": "0" * 32}}}}
    with pytest.raises(InputError, match="expected md5"):
        dl.run(argparse.Namespace(source="w", out=tmp_path / "v.params", lock_file=None), bad)


def test_recorded_sources_are_well_formed() -> None:
    """params.yaml validates; every default location parses; torch hub names carry their sha256's prefix.

    Every source has a published checksum or is recorded by its first download (sources.lock.yaml); the EPS
    routes' saliency maps have a default location, so no route needs an edit before it starts.
    """
    params = load_params([REPO / "params.yaml"])
    for name, entry in params["data"]["sources"].items():
        urls = [entry["url"]] if isinstance(entry["url"], str) else entry["url"]
        assert urls, f"{name}: no default location"
        for url in urls:
            location = dl.parse_location(url, f"data.sources.{name}")
            assert location.kind in ("http", "gdrive"), (name, url)
            tag = re.search(r"-([0-9a-f]{8})\.pth$", url)
            if tag:  # torch.hub convention: the hex tag in the file name is the start of the file's sha256
                assert entry["sha256"].startswith(tag.group(1)), name
    assert dl.read_lock(REPO / "sources.lock.yaml") is not None  # the committed lock file parses
    assert "github.com/itijyou/ademxapp/releases" not in (REPO / "params.yaml").read_text()  # never published
