"""Sources that resolve: mirrors tried in order, Google Drive / Dropbox / OneDrive share links, the lock file.

A server on 127.0.0.1 stands in for the share hosts (download.HOST_OVERRIDES sends their requests there). It answers
as the hosts do: Drive redirects a small file to its download host and answers a large one with the "can't scan this
file for viruses" page whose form carries confirm and uuid; Dropbox shows a preview page unless dl=1; OneDrive's
shares API takes the link encoded as "u!" + unpadded base64url.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ppcseg.data import download as dl
from ppcseg.utils.errors import InputError

PAYLOAD = os.urandom(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
OTHER = os.urandom(200_000)  # what a tampered or changed mirror serves
OTHER_SHA = hashlib.sha256(OTHER).hexdigest()
FAST = {"retries": 1, "backoff_s": 0.01, "timeout_s": 5.0}
# A public mirror (https, so the lock may key records by it) that the stand-in server answers.
MIRROR_HOST = "files.example.org"
MIRROR = f"https://{MIRROR_HOST}/files"

SMALL_ID = "1smallFileIdAbCdEfGhIjKlMnOp"
LARGE_ID = "15F13LEL5aO45JU-j45PYjzv5KW5bn_Pn"
QUOTA_ID = "1quotaExceededIdAbCdEfGhIjK"
# Confirmation pages whose form lacks what gdown's parser indexes: the form's action, a hidden field's name.
NO_ACTION_ID = "1noActionFormIdAbCdEfGhIjKl"
NO_NAME_ID = "1noNameFieldIdAbCdEfGhIjKlM"
UUID = "0b9e4f0a-5c1d-4a8e-9d3c-7f2e1a6b8c90"
DROPBOX = "https://www.dropbox.com/s/n2eewzy7bn7lhk0/ilsvrc-cls_rna-a1_cls1000_ep-0001.params?dl=0"
ONEDRIVE = "https://1drv.ms/u/s!AgGL9MGcRHv0mQSKoJ6CDU0cMjd2?e=dFlHgN"
# "u!" + unpadded base64url of ONEDRIVE, computed independently: printf %s URL | base64 -w0 | tr '+/' '-_' | tr -d =
ONEDRIVE_TOKEN = "u!aHR0cHM6Ly8xZHJ2Lm1zL3UvcyFBZ0dMOU1HY1JIdjBtUVNLb0o2Q0RVMGNNamQyP2U9ZEZsSGdO"


@dataclass
class Hosts:
    """State of the stand-in share hosts: the files served, the requests seen, paths that hang or serve OTHER."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)
    requests: list[dict[str, str]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


def _confirmation_page(base: str, file_id: str) -> str:
    # Drive's page for files too large to scan, reduced to what clients read: the form is one line, as Drive sends it.
    action = "" if file_id == NO_ACTION_ID else f' action="{base}/usercontent/download"'
    name = "" if file_id == NO_NAME_ID else ' name="id"'
    form = (
        f'<form id="download-form"{action} method="get">'
        '<input type="submit" id="uc-download-link" value="Download anyway"/>'
        f'<input type="hidden"{name} value="{file_id}"><input type="hidden" name="export" value="download">'
        f'<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{UUID}"></form>'
    )
    return (
        "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>\n"
        '<p class="uc-warning-subcaption">Google Drive can\'t scan this file for viruses.</p>\n'
        f"{form}\n</body></html>\n"
    )


def _handler(hosts: Hosts):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if status == 200 and match and content_type == "application/octet-stream":
                start, status = int(match.group(1)), 206
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _file(self, name: str) -> None:
            if name not in hosts.files:
                self.send_error(404, "not found")
                return
            disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
            self._send(200, hosts.files[name], "application/octet-stream", disposition)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            hosts.requests.append({"path": self.path, "range": self.headers.get("Range", "")})
            if url.path in hosts.slow:
                time.sleep(2.0)  # past the client's timeout
            if url.path == "/uc":  # drive.google.com/uc?id=...&export=download
                file_id = query.get("id", "")
                if file_id == QUOTA_ID:
                    page = '<p class="uc-error-subcaption">Too many users have viewed or downloaded this file.</p>'
                    self._send(200, page.encode(), "text/html; charset=utf-8")
                elif file_id in (LARGE_ID, NO_ACTION_ID, NO_NAME_ID):
                    self._send(200, _confirmation_page(hosts.base, file_id).encode(), "text/html; charset=utf-8")
                else:
                    self._redirect(f"{hosts.base}/usercontent/download?id={file_id}&export=download")
            elif url.path == "/usercontent/download":  # drive.usercontent.google.com
                file_id = query.get("id", "")
                if file_id == LARGE_ID and (query.get("confirm") != "t" or query.get("uuid") != UUID):
                    self._send(200, _confirmation_page(hosts.base, file_id).encode(), "text/html; charset=utf-8")
                else:
                    self._file(file_id)
            elif url.path.startswith(("/s/", "/scl/fi/")):  # www.dropbox.com: a preview page unless dl=1
                if query.get("dl") == "1":
                    self._redirect(f"{hosts.base}/dropbox-content/{url.path.rsplit('/', 1)[1]}")
                else:
                    self._send(200, b"<html>Dropbox preview</html>", "text/html")
            elif url.path.startswith("/dropbox-content/"):  # dl.dropboxusercontent.com
                self._file(url.path.rsplit("/", 1)[1])
            elif m := re.fullmatch(r"/v1\.0/shares/([^/]+)/root/content", url.path):  # api.onedrive.com
                if m.group(1) == ONEDRIVE_TOKEN:
                    self._redirect(f"{hosts.base}/onedrive-content/shared.params")
                else:
                    self.send_error(404, "itemNotFound")
            elif url.path.startswith(("/onedrive-content/", "/files/")):
                self._file(url.path.rsplit("/", 1)[1])
            else:
                self.send_error(404, "not found")

    return Handler


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch):
    state = Hosts()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    for host in ("drive.google.com", "www.dropbox.com", "api.onedrive.com", MIRROR_HOST):
        monkeypatch.setitem(dl.HOST_OVERRIDES, host, state.base)
    yield state
    httpd.shutdown()
    httpd.server_close()


# Share links: each form becomes the right requests.


@pytest.mark.parametrize(
    "link",
    [
        f"gdrive:{SMALL_ID}",
        f"https://drive.google.com/file/d/{SMALL_ID}/view?usp=sharing",
        f"https://drive.google.com/open?id={SMALL_ID}",
        f"https://drive.google.com/uc?id={SMALL_ID}&export=download",
    ],
)
def test_gdrive_small_file(tmp_path: Path, hosts: Hosts, link: str) -> None:
    hosts.files[SMALL_ID] = PAYLOAD
    assert dl.download(link, tmp_path / "w.params", sha256=SHA, **FAST) == SHA
    assert (tmp_path / "w.params").read_bytes() == PAYLOAD
    assert hosts.paths()[0] == f"/uc?id={SMALL_ID}&export=download"


def test_gdrive_large_file_passes_the_confirmation_page(tmp_path: Path, hosts: Hosts) -> None:
    hosts.files[LARGE_ID] = PAYLOAD
    link = f"https://drive.google.com/file/d/{LARGE_ID}/view"
    dl.download(link, tmp_path / "w.params", sha256=None, md5=MD5, **FAST)
    assert (tmp_path / "w.params").read_bytes() == PAYLOAD
    confirmed = [urllib.parse.urlsplit(p) for p in hosts.paths() if p.startswith("/usercontent/")]
    assert confirmed, hosts.paths()
    query = dict(urllib.parse.parse_qsl(confirmed[-1].query))
    assert query == {"id": LARGE_ID, "export": "download", "confirm": "t", "uuid": UUID}


def test_gdrive_error_page_is_reported(tmp_path: Path, hosts: Hosts) -> None:
    with pytest.raises(InputError, match=f"Google Drive file {QUOTA_ID}: Too many users"):
        dl.download(f"gdrive:{QUOTA_ID}", tmp_path / "w.params", sha256=SHA, **FAST)
    assert not (tmp_path / "w.params").exists()


@pytest.mark.parametrize("file_id", [NO_ACTION_ID, NO_NAME_ID], ids=["form-without-action", "field-without-name"])
def test_gdrive_malformed_confirmation_page_is_one_line(tmp_path: Path, hosts: Hosts, file_id: str) -> None:
    """gdown's parser indexes the form's attributes: such a page ended in a KeyError traceback."""
    link = f"https://drive.google.com/file/d/{file_id}/view"
    with pytest.raises(InputError) as err:
        dl.download(link, tmp_path / "w.params", sha256=SHA, key="data.sources.w", **FAST)
    message = str(err.value)
    assert f"Google Drive file {file_id}" in message and "confirmation page" in message and "\n" not in message
    assert not (tmp_path / "w.params").exists() and not (tmp_path / "w.params.part").exists()


@pytest.mark.parametrize("file_id", ["1abcdefghijk\n", "1abcdéfghijkl", "1abc/defghijk", "short"])
def test_gdrive_id_is_checked_whole_in_ascii(tmp_path: Path, hosts: Hosts, file_id: str) -> None:
    with pytest.raises(InputError, match="not a Google Drive file id"):
        dl.download(f"gdrive:{file_id}", tmp_path / "w", sha256=SHA, key="data.sources.w")
    assert not hosts.requests


@pytest.mark.parametrize(
    "link",
    [
        "https://drive.google.com/open?id=../../etc/passwd",
        "https://drive.google.com/uc?id=a%20b&export=download",
        "https://drive.google.com/uc?id=short&export=download",
        "https://docs.google.com/document/d/1abcdefghijk/x/edit",
        "https://drive.google.com/open?id=1abcdefghijk%0Aother",
    ],
)
def test_share_link_with_an_invalid_file_id_refused_before_any_network(tmp_path: Path, hosts: Hosts, link: str) -> None:
    with pytest.raises(InputError, match=re.escape(f"data.sources.w.url: {link}: ") + ".*not a Google Drive file id"):
        dl.download(link, tmp_path / "w", sha256=SHA, key="data.sources.w")
    assert not hosts.requests


def test_gdrive_folder_link_refused_before_any_network(tmp_path: Path, hosts: Hosts) -> None:
    with pytest.raises(InputError, match="no Google Drive file id"):
        dl.download(
            "https://drive.google.com/drive/folders/1jWsV5Yev-PwKgvvtUM3GnY0ogb50-qKa", tmp_path / "w", sha256=SHA
        )
    assert not hosts.requests


@pytest.mark.parametrize(
    "link,first",
    [
        (DROPBOX, "/s/n2eewzy7bn7lhk0/ilsvrc-cls_rna-a1_cls1000_ep-0001.params?dl=1"),
        ("https://www.dropbox.com/scl/fi/abc123/x.params?rlkey=k9z&dl=0", "/scl/fi/abc123/x.params?rlkey=k9z&dl=1"),
    ],
)
def test_dropbox_share_link_fetched_with_dl_1(tmp_path: Path, hosts: Hosts, link: str, first: str) -> None:
    hosts.files[first.split("?")[0].rsplit("/", 1)[1]] = PAYLOAD
    dl.download(link, tmp_path / "w.params", sha256=SHA, **FAST)
    assert (tmp_path / "w.params").read_bytes() == PAYLOAD
    assert hosts.paths()[0] == first


def test_onedrive_share_link_fetched_through_the_shares_api(tmp_path: Path, hosts: Hosts) -> None:
    hosts.files["shared.params"] = PAYLOAD
    dl.download(ONEDRIVE, tmp_path / "w.params", sha256=SHA, **FAST)
    assert (tmp_path / "w.params").read_bytes() == PAYLOAD
    assert hosts.paths()[0] == f"/v1.0/shares/{ONEDRIVE_TOKEN}/root/content"


def test_onedrive_token_matches_microsofts_example() -> None:
    # The example of Microsoft's OneDrive API documentation ("shares: get", Encoding sharing URLs).
    url = dl.onedrive_direct_url("https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1")
    token = "u!aHR0cHM6Ly9vbmVkcml2ZS5saXZlLmNvbS9yZWRpcj9yZXNpZD0xMjMxMjQ0MTkzOTEyITEyJmF1dGhLZXk9MTIwMTkxOSExMjkyMSEx"
    assert url == f"https://api.onedrive.com/v1.0/shares/{token}/root/content"


# Mirrors: the next location after a 404, a timeout or a checksum mismatch.


@pytest.mark.parametrize("failure", ["404", "timeout", "mismatch", "drive-quota"])
def test_falls_back_to_the_next_mirror(tmp_path: Path, hosts: Hosts, logs, failure: str) -> None:
    hosts.files["good.params"] = PAYLOAD
    hosts.files["tampered.params"] = OTHER
    hosts.slow.add("/files/slow.params")
    hosts.files["slow.params"] = PAYLOAD
    first = {
        "404": f"{hosts.base}/files/missing.params",
        "timeout": f"{hosts.base}/files/slow.params",
        "mismatch": f"{hosts.base}/files/tampered.params",
        "drive-quota": f"gdrive:{QUOTA_ID}",
    }[failure]
    second = f"{hosts.base}/files/good.params"
    out = tmp_path / "w.params"
    options = {**FAST, "retries": 0, "timeout_s": 0.5}
    assert dl.download([first, second], out, sha256=SHA, key="data.sources.resnet38", **options) == SHA
    assert out.read_bytes() == PAYLOAD
    assert f"trying the next location, {second}" in logs.text
    assert (tmp_path / "w.params.corrupt").exists() == (failure == "mismatch")
    assert not (tmp_path / "w.params.part").exists() and not (tmp_path / "w.params.part.from").exists()


def test_every_location_failing_is_reported(tmp_path: Path, hosts: Hosts) -> None:
    hosts.files["tampered.params"] = OTHER
    urls = [f"{hosts.base}/files/missing.params", f"{hosts.base}/files/tampered.params"]
    with pytest.raises(InputError) as err:
        dl.download(urls, tmp_path / "w.params", sha256=SHA, key="data.sources.resnet38", **FAST)
    message = str(err.value)
    assert message.startswith("data.sources.resnet38: no location gave a verified file")
    assert "HTTP 404" in message and f"expected sha256 {SHA}, got {OTHER_SHA}" in message
    assert not (tmp_path / "w.params").exists()


def test_unsupported_mirror_refused_before_any_network(tmp_path: Path, hosts: Hosts) -> None:
    hosts.files["good.params"] = PAYLOAD
    with pytest.raises(InputError, match="unsupported scheme 'ftp'"):
        dl.download([f"{hosts.base}/files/good.params", "ftp://x/y"], tmp_path / "w", sha256=SHA, key="data.sources.x")
    assert not hosts.requests


def test_partial_file_from_another_location_is_not_resumed(tmp_path: Path, hosts: Hosts) -> None:
    hosts.files["good.params"] = PAYLOAD
    out = tmp_path / "w.params"
    (tmp_path / "w.params.part").write_bytes(OTHER[:50_000])
    (tmp_path / "w.params.part.from").write_text("https://elsewhere.example/w.params")
    dl.download(f"{hosts.base}/files/good.params", out, sha256=SHA, **FAST)
    assert out.read_bytes() == PAYLOAD
    assert [r["range"] for r in hosts.requests] == [""]


def test_partial_file_from_the_same_location_is_resumed(tmp_path: Path, hosts: Hosts) -> None:
    hosts.files["good.params"] = PAYLOAD
    url = f"{hosts.base}/files/good.params"
    (tmp_path / "w.params.part").write_bytes(PAYLOAD[:50_000])
    (tmp_path / "w.params.part.from").write_text(url)
    dl.download(url, tmp_path / "w.params", sha256=SHA, **FAST)
    assert (tmp_path / "w.params").read_bytes() == PAYLOAD
    assert [r["range"] for r in hosts.requests] == ["bytes=50000-"]


# The lock file: the first verified download of a source without a published SHA-256 records one; it is enforced.


@pytest.mark.parametrize("md5", [None, MD5], ids=["no-checksum", "md5-only"])
def test_lock_written_once_and_enforced(tmp_path: Path, hosts: Hosts, logs, md5: str | None) -> None:
    lock = tmp_path / "sources.lock.yaml"
    hosts.files[SMALL_ID] = PAYLOAD
    hosts.files["good.params"] = PAYLOAD
    first = f"https://drive.google.com/file/d/{SMALL_ID}/view"
    dl.download([first], tmp_path / "a.params", sha256=None, md5=md5, key="data.sources.saliency", lock_file=lock)
    recorded = yaml.safe_load(lock.read_text())
    assert recorded == {"saliency": {first: {"sha256": SHA}}}
    assert f"has sha256 {SHA}" in logs.text and f"recorded for {first} in {lock}" in logs.text
    text, mtime = lock.read_text(), lock.stat().st_mtime_ns

    # Another machine, a mirror listed before the recorded location, the same file: accepted, the record stays.
    mirrors = [f"{hosts.base}/files/good.params", first]
    dl.download(mirrors, tmp_path / "b.params", sha256=None, md5=md5, key="data.sources.saliency", lock_file=lock)
    assert lock.read_text() == text and lock.stat().st_mtime_ns == mtime

    # The mirror serving another file (and the recorded location gone): refused, naming the file and both hashes;
    # the record is unchanged.
    hosts.files["good.params"] = OTHER
    del hosts.files[SMALL_ID]
    out = tmp_path / "c.params"
    with pytest.raises(InputError) as err:
        dl.download(mirrors, out, sha256=None, md5=None, key="data.sources.saliency", lock_file=lock, **FAST)
    message = str(err.value)
    assert f"expected sha256 {SHA} (recorded in {lock} for {first}), got {OTHER_SHA}" in message
    assert str(tmp_path / "c.params.corrupt") in message
    assert not out.exists() and lock.read_text() == text


def test_lock_keeps_other_entries_and_params_sha256_records_nothing(tmp_path: Path, hosts: Hosts) -> None:
    lock = tmp_path / "sources.lock.yaml"
    lock.write_text(dl.LOCK_HEADER + yaml.safe_dump({"resnet38": {"gdrive:x": {"sha256": "a" * 64}}}))
    hosts.files["good.params"] = PAYLOAD
    url = f"{MIRROR}/good.params"
    dl.download(url, tmp_path / "v.tar", sha256=SHA, key="data.sources.voc", lock_file=lock, **FAST)
    assert "voc" not in yaml.safe_load(lock.read_text())  # a published sha256 needs no record
    dl.download(url, tmp_path / "s.zip", sha256=None, key="data.sources.saliency", lock_file=lock, **FAST)
    entries = yaml.safe_load(lock.read_text())
    assert entries == {"resnet38": {"gdrive:x": {"sha256": "a" * 64}}, "saliency": {url: {"sha256": SHA}}}
    assert lock.read_text().startswith(dl.LOCK_HEADER)


def test_lock_record_refuses_a_wrong_present_file_and_falls_back(tmp_path: Path, hosts: Hosts) -> None:
    lock = tmp_path / "sources.lock.yaml"
    urls = [f"{MIRROR}/tampered.params", f"{MIRROR}/good.params"]
    lock.write_text(yaml.safe_dump({"saliency": {urls[1]: {"sha256": SHA}}}))
    hosts.files["tampered.params"] = OTHER
    hosts.files["good.params"] = PAYLOAD
    out = tmp_path / "s.zip"
    out.write_bytes(OTHER)  # a stale file from before: re-fetched, not trusted
    dl.download(urls, out, sha256=None, key="data.sources.saliency", lock_file=lock, **FAST)
    assert out.read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    "text",
    [
        "saliency: [1, 2]\n",
        "saliency: {sha256: abc}\n",
        "saliency: {https://a.org/s.zip: {sha256: abc}}\n",
        f"saliency: {{https://a.org/s.zip: {{sha256: {SHA}, size: 3}}}}\n",
        "saliency: {}\n",
        "- x\n",
        "a: [\n",  # not YAML: was PyYAML's 8-line dump
        f"saliency:\n  https://a.org/s.zip: {{sha256: {SHA}}}\n  https://a.org/s.zip: {{sha256: {SHA}}}\n",
        "\ufeff\x00",
    ],
)
def test_malformed_lock_file_is_refused_in_one_line(tmp_path: Path, hosts: Hosts, text: str) -> None:
    lock = tmp_path / "sources.lock.yaml"
    lock.write_text(text)
    with pytest.raises(InputError, match=re.escape(str(lock))) as err:
        dl.download(f"{MIRROR}/x", tmp_path / "s.zip", sha256=None, key="data.sources.saliency", lock_file=lock)
    assert "\n" not in str(err.value)
    assert not hosts.requests and lock.read_text() == text


def test_stage_passes_mirrors_and_lock(tmp_path: Path, hosts: Hosts) -> None:
    hosts.files[LARGE_ID] = PAYLOAD
    lock = tmp_path / "sources.lock.yaml"
    params = {"data": {"sources": {"saliency": {"url": [f"{hosts.base}/files/gone.zip", f"gdrive:{LARGE_ID}"]}}}}
    out = tmp_path / "saliency.zip"
    dl.run(argparse.Namespace(source="saliency", out=out, lock_file=lock), params)
    assert out.read_bytes() == PAYLOAD
    assert yaml.safe_load(lock.read_text())["saliency"] == {f"gdrive:{LARGE_ID}": {"sha256": SHA}}


# The lock across routes, machines and clones: records per file (source and URL), nothing machine-specific.


@pytest.mark.parametrize("kept", [True, False], ids=["output-kept", "output-deleted-first"])
def test_a_changed_location_fetches_the_new_file_and_keeps_both_records(
    tmp_path: Path, hosts: Hosts, logs, kept: bool
) -> None:
    """Switching a source to another file (a route's released model to another route's) and back.

    Snakemake deletes the old output before the job ("output-deleted-first"); by hand it is still there ("kept").
    """
    lock, out = tmp_path / "sources.lock.yaml", tmp_path / "released" / "cam.pth"
    hosts.files["seam.pth"], hosts.files["eps.pth"] = PAYLOAD, OTHER
    seam, eps = f"{MIRROR}/seam.pth", f"{MIRROR}/eps.pth"
    for url, payload in [(seam, PAYLOAD), (eps, OTHER), (seam, PAYLOAD)]:
        if not kept:
            out.unlink(missing_ok=True)
        dl.download(url, out, sha256=None, key="data.sources.cam", lock_file=lock, **FAST)
        assert out.read_bytes() == payload, url
    assert yaml.safe_load(lock.read_text()) == {"cam": {seam: {"sha256": SHA}, eps: {"sha256": OTHER_SHA}}}
    # The way back was verified against the first record, not taken for the present file.
    assert logs.text.count("recorded") == 2 and f"verified (sha256 {SHA}) from {seam}" in logs.text


def test_lock_records_no_local_path_and_matches_across_mirrors(tmp_path: Path, hosts: Hosts, logs) -> None:
    lock = tmp_path / "sources.lock.yaml"
    local = tmp_path / "mirror" / "cam.pth"
    local.parent.mkdir()
    local.write_bytes(PAYLOAD)
    hosts.files["cam.pth"] = PAYLOAD
    public = f"{MIRROR}/cam.pth"
    # Fetched from a local mirror listed first: recorded under the public location beside it, not the local path.
    dl.download([local.as_uri(), public], tmp_path / "a.pth", sha256=None, key="data.sources.cam", lock_file=lock)
    assert yaml.safe_load(lock.read_text()) == {"cam": {public: {"sha256": SHA}}}
    assert str(tmp_path) not in lock.read_text() and not hosts.requests
    # Another clone on another machine, from the public location only: the same record applies.
    dl.download(public, tmp_path / "b.pth", sha256=None, key="data.sources.cam", lock_file=lock, **FAST)
    assert f"verified (sha256 {SHA}) from {public}" in logs.text
    # A local file alone is this machine's: its sha256 is logged, nothing is recorded; a server on this machine
    # alone cannot be recorded either, so it is refused as a download without any checksum.
    before = lock.read_text()
    for url in [str(local), local.as_uri()]:
        dl.download(url, tmp_path / "c.pth", sha256=None, key="data.sources.other", lock_file=lock, **FAST)
        assert lock.read_text() == before
    assert f"has sha256 {SHA}: record it as data.sources.other.sha256" in logs.text
    with pytest.raises(InputError, match="records no server on this machine: refusing to download"):
        dl.download(
            f"{hosts.base}/files/cam.pth", tmp_path / "d.pth", sha256=None, key="data.sources.x", lock_file=lock
        )
    assert lock.read_text() == before and not (tmp_path / "d.pth").exists()


def test_lock_of_the_earlier_format_is_read(tmp_path: Path, hosts: Hosts) -> None:
    """{source: {sha256, location}} as the lock was first written: its record applies to its location only."""
    lock = tmp_path / "sources.lock.yaml"
    hosts.files["a.pth"], hosts.files["b.pth"] = OTHER, OTHER
    lock.write_text(yaml.safe_dump({"cam": {"sha256": SHA, "location": f"{MIRROR}/a.pth"}}))
    with pytest.raises(InputError, match=f"expected sha256 {SHA}"):
        dl.download(f"{MIRROR}/a.pth", tmp_path / "a.pth", sha256=None, key="data.sources.cam", lock_file=lock, **FAST)
    dl.download(f"{MIRROR}/b.pth", tmp_path / "b.pth", sha256=None, key="data.sources.cam", lock_file=lock, **FAST)
    assert yaml.safe_load(lock.read_text())["cam"] == {
        f"{MIRROR}/a.pth": {"sha256": SHA},
        f"{MIRROR}/b.pth": {"sha256": OTHER_SHA},
    }
