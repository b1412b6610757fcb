"""download --source <stage>.released: the released files of every route share one lock file, each recorded per URL.

The OneDrive links are the real ones of config/released/; a server on 127.0.0.1 answers as the OneDrive shares API
(download.HOST_OVERRIDES sends api.onedrive.com there) with stand-in files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from ppcseg.cli import main
from ppcseg.config import REPO_ROOT
from ppcseg.data import download as dl
from tests.data.archive_builders import http_server  # noqa: F401  (fixture)

ROUTES = {
    "seam_ppc": ["params.yaml", "config/released/seam_ppc.yaml"],
    "eps_ppc": ["params.yaml", "config/routes/eps_ppc.yaml", "config/released/eps_ppc.yaml"],
}


def cam_url(route: str) -> str:
    return yaml.safe_load((REPO_ROOT / "config" / "released" / f"{route}.yaml").read_text())["cam"]["released"]["url"]


@pytest.fixture
def onedrive(http_server, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:  # noqa: F811
    """Stand-in bytes of each route's released CAM network, served where the shares API would serve them."""
    monkeypatch.setitem(dl.HOST_OVERRIDES, "api.onedrive.com", http_server.base)
    files = {route: os.urandom(50_000) for route in ROUTES}
    for route, data in files.items():
        served = http_server.root / dl.onedrive_direct_url(cam_url(route)).split("://", 1)[1].split("/", 1)[1]
        served.parent.mkdir(parents=True)
        served.write_bytes(data)
    return files


def fetch(route: str, out: Path, lock: Path) -> int:
    params = [a for f in ROUTES[route] for a in ("--params", str(REPO_ROOT / f))]
    return main(["download", *params, "--source", "cam.released", "--out", str(out), "--lock-file", str(lock)])


@pytest.mark.parametrize("deleted", [False, True], ids=["by-hand", "output-deleted-first-as-snakemake-does"])
def test_switching_routes_fetches_each_routes_file_and_records_both(tmp_path, onedrive, capsys, deleted):
    lock, out = tmp_path / "sources.lock.yaml", tmp_path / "data" / "released" / "cam.pth"
    lock.write_text("{}\n")  # as committed
    for route in ["seam_ppc", "eps_ppc", "seam_ppc"]:
        if deleted:
            out.unlink(missing_ok=True)
        assert fetch(route, out, lock) == 0, capsys.readouterr().err
        assert out.read_bytes() == onedrive[route], route
    records = yaml.safe_load(lock.read_text())
    assert records == {
        "cam_released": {cam_url(r): {"sha256": hashlib.sha256(onedrive[r]).hexdigest()} for r in ROUTES}
    }
    assert str(tmp_path) not in lock.read_text() and "127.0.0.1" not in lock.read_text()


def test_a_changed_file_at_a_recorded_url_is_refused_naming_the_url(tmp_path, onedrive, capsys):
    lock, out = tmp_path / "sources.lock.yaml", tmp_path / "cam.pth"
    assert fetch("seam_ppc", out, lock) == 0
    text = lock.read_text()
    out.unlink()
    for served in (tmp_path / "served").rglob("content"):
        served.write_bytes(os.urandom(50_000))  # the publisher replaced the files behind the links
    assert fetch("seam_ppc", out, lock) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert (
        len(lines) == 1
        and "checksum mismatch" in lines[0]
        and f"recorded in {lock} for {cam_url('seam_ppc')}" in (lines[0])
    )
    assert not out.exists() and lock.read_text() == text


@pytest.mark.parametrize(
    ("source", "needle"),
    [("cam.released", "cam.released is not set"), ("report.released", "--source report.released: not a source")],
)
def test_an_unset_or_unknown_released_source_is_refused_naming_it(tmp_path, capsys, source, needle):
    params = ["--params", str(REPO_ROOT / "params.yaml")]
    assert main(["download", *params, "--source", source, "--out", str(tmp_path / "cam.pth")]) == 2
    assert needle in capsys.readouterr().err and not (tmp_path / "cam.pth").exists()
