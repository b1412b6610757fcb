"""Builders for small VOC / SBD archives and a local HTTP server with Range support, for the data tests."""

from __future__ import annotations

import http.server
import io
import re
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from ppcseg.data.voc import PALETTE

# A tiny VOC: train / val with SegmentationClass masks, SBD ids with JPEGs only, one JPEG outside every list.
VOC_TRAIN = ["2007_000010", "2007_000020", "2007_000030"]
VOC_VAL = ["2007_000040", "2007_000050"]
SBD_ONLY = ["2008_000011", "2008_000022", "2008_000033", "2008_000044"]
UNLISTED = ["2009_000099"]
# SBD train overlaps VOC train (VOC mask wins) and VOC val (excluded from train_aug).
SBD_TRAIN = ["2008_000011", "2008_000022", "2007_000010", "2007_000040"]
SBD_VAL = ["2008_000033", "2008_000044"]
TRAIN_AUG = sorted(set(VOC_TRAIN) | set(SBD_ONLY))


def image_shape(image_id: str) -> tuple[int, int]:
    """A different small size per image, so that size checks mean something."""
    n = int(image_id[-2:])
    return 20 + n % 7, 24 + n % 5


def voc_mask(image_id: str) -> np.ndarray:
    h, w = image_shape(image_id)
    cls = 1 + int(image_id[-2:]) % 20
    mask = np.zeros((h, w), np.uint8)
    mask[4:14, 5:15] = cls
    mask[3, 4:16] = 255  # a VOC-style border row
    return mask


def sbd_mask(image_id: str) -> np.ndarray:
    """SBD mask: no 255, and a different class than the VOC mask so that precedence is visible."""
    h, w = image_shape(image_id)
    mask = np.zeros((h, w), np.uint8)
    mask[2:10, 2:12] = 1 + (int(image_id[-2:]) + 5) % 20
    mask[12:, 15:] = 7
    return mask


def _png_bytes(mask: np.ndarray) -> bytes:
    img = Image.fromarray(mask, mode="P")
    img.putpalette(PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(image_id: str) -> bytes:
    h, w = image_shape(image_id)
    rng = np.random.default_rng(int(image_id.replace("_", "")))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _mat_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    classes = np.unique(mask[(mask > 0) & (mask < 255)]).astype(np.uint8)
    boundaries = np.empty((20,), dtype=object)
    for i in range(20):
        boundaries[i] = np.zeros((1, 1), np.uint8)
    scipy.io.savemat(
        buf, {"GTcls": {"Segmentation": mask, "Boundaries": boundaries, "CategoriesPresent": classes}}, format="5"
    )
    return buf.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def voc_members(*, missing_jpeg: str | None = None, bad_palette: str | None = None) -> list[tuple[str, bytes]]:
    prefix = "VOCdevkit/VOC2012/"
    members = []
    for image_id in VOC_TRAIN + VOC_VAL + SBD_ONLY + UNLISTED:
        if image_id != missing_jpeg:
            members.append((f"{prefix}JPEGImages/{image_id}.jpg", _jpeg_bytes(image_id)))
    for image_id in VOC_TRAIN + VOC_VAL:
        data = _png_bytes(voc_mask(image_id))
        if image_id == bad_palette:
            buf = io.BytesIO()
            Image.fromarray(voc_mask(image_id), mode="L").save(buf, format="PNG")
            data = buf.getvalue()
        members.append((f"{prefix}SegmentationClass/{image_id}.png", data))
    lists = {"train": VOC_TRAIN, "val": VOC_VAL, "trainval": sorted(VOC_TRAIN + VOC_VAL)}
    for split, ids in lists.items():
        members.append((f"{prefix}ImageSets/Segmentation/{split}.txt", "".join(f"{i}\n" for i in ids).encode()))
    members.append((f"{prefix}Annotations/{VOC_TRAIN[0]}.xml", b"<annotation/>"))  # not needed: skipped
    return members


def sbd_members(*, missing_mat: str | None = None, bad_mat: str | None = None) -> list[tuple[str, bytes]]:
    prefix = "benchmark_RELEASE/dataset/"
    members = [
        (f"{prefix}train.txt", "".join(f"{i}\n" for i in SBD_TRAIN).encode()),
        (f"{prefix}val.txt", "".join(f"{i}\n" for i in SBD_VAL).encode()),
    ]
    for image_id in SBD_TRAIN + SBD_VAL:
        if image_id == missing_mat:
            continue
        data = b"not a MATLAB file" if image_id == bad_mat else _mat_bytes(sbd_mask(image_id))
        members.append((f"{prefix}cls/{image_id}.mat", data))
        members.append((f"{prefix}img/{image_id}.jpg", _jpeg_bytes(image_id)))  # not needed: skipped
    return members


def write_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w", extra=None) -> Path:
    """A tar archive of (name, bytes) members; `extra(tar)` may add hostile members."""
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            add_bytes(tar, name, data)
        if extra is not None:
            extra(tar)
    return path


@pytest.fixture
def voc_tar(tmp_path: Path) -> Path:
    return write_tar(tmp_path / "VOCtrainval.tar", voc_members())


@pytest.fixture
def sbd_tgz(tmp_path: Path) -> Path:
    return write_tar(tmp_path / "benchmark.tgz", sbd_members(), mode="w:gz")


@dataclass
class Server:
    """A local HTTP server over a folder; `truncate` makes the next responses stop early, `fail` answer 500."""

    root: Path
    base: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    truncate: list[int] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    ignore_range: bool = False


def _handler(server_state: Server):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            server_state.requests.append({"path": self.path, "range": self.headers.get("Range", "")})
            if server_state.fail:
                server_state.fail.pop(0)
                self.send_error(500, "boom")
                return
            path = server_state.root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404, "not found")
                return
            data = path.read_bytes()
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match and not server_state.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if server_state.truncate:
                body = body[: server_state.truncate.pop(0)]  # then close: the client sees a short body
                self.close_connection = True
            self.wfile.write(body)

    return Handler


@pytest.fixture
def http_server(tmp_path: Path):
    root = tmp_path / "served"
    root.mkdir()
    state = Server(root=root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
