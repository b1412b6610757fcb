"""Progress reporting: a tqdm bar on a terminal, plain periodic log lines elsewhere (Slurm logs, CI)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("ppcseg")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", every_s: float = 10.0) -> Iterator[T]:
    """Iterate with a progress bar (tty) or a log line every `every_s` seconds with rate and ETA (no tty)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s or (total is not None and done == total):
            rate = done / max(now - start, 1e-9)
            eta = (total - done) / rate if total else float("nan")
            log.info("%s: %d/%s done, %.2f it/s, ETA %.0f s", desc, done, total if total else "?", rate, eta)
            last = now
