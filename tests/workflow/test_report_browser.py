"""results/report.html in a real headless browser (Chromium): the table, the plots and the overlays are there and
decode, the page does not overflow a narrow window, the console stays clean, and the screenshot is not blank."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.timing import HANG_GUARD_S

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FIGURES = ["per_class_iou", "train_cam_loss", "train_affinity_loss", "seed_threshold_curve", "overlays"]
# Appended to a copy of the page: after load, record what the browser made of the images and the layout.
PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.overflowX = document.documentElement.scrollWidth > window.innerWidth;
});
</script></body>"""


def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(f"no headless browser: none of {', '.join(BROWSERS)} on PATH (Debian: apt-get install chromium)")


def chromium(*args: str, width: int = 1400, height: int = 4000) -> subprocess.CompletedProcess:
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    cmd += [f"--window-size={width},{height}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, check=True)


class Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def dump_dom(page: Path, width: int) -> tuple[Dom, str]:
    proc = chromium("--dump-dom", page.as_uri(), width=width, height=2000)
    dom = Dom()
    dom.feed(proc.stdout)
    return dom, proc.stderr


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_report_renders_in_a_browser(demo_run, tmp_path):
    repo, _ = demo_run
    probed = tmp_path / "report.html"
    probed.write_text((repo / "results/report.html").read_text().replace("</body>", PROBE))

    for width in (1400, 700):  # a desktop and a narrow window
        dom, stderr = dump_dom(probed, width)
        assert not console_errors(stderr), console_errors(stderr)
        (body,) = dom.find("body")
        assert body["data-images"] == body["data-decoded"] == str(len(FIGURES)), body
        assert body["data-overflow-x"] == "false", f"the page scrolls sideways at {width} px"
    assert len(dom.find("table", id="results")) == 1
    assert len(dom.find("tr")) == 1 + 4  # header + seed, mask, segmentation, segmentation-msf-crf
    for name in FIGURES:
        assert len(dom.find("figure", id=f"fig-{name}")) == 1, name
    images = dom.find("img")
    assert len(images) == len(FIGURES) and all(i["src"].startswith("data:image/png;base64,") for i in images)

    shot = tmp_path / "report.png"
    proc = chromium(f"--screenshot={shot}", probed.as_uri())
    assert not console_errors(proc.stderr), console_errors(proc.stderr)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (4000, 1400)
    not_white = (pixels < 245).any(axis=2)
    assert not_white.mean() > 0.05, "the screenshot is (nearly) blank"
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 1000, "too few colours for a page with plots and photo overlays"
    # The overlays (the last figure) are below the fold of a small window but inside the 4000 px shot.
    assert not_white[2000:].mean() > 0.02
