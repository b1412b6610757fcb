"""affinity-labels: low/high-alpha hard-label CRF maps that supervise AffinityNet (spec 4.3 step 1).

For each alpha the background score is (1 - max_fg CAM)^alpha; the argmax over [background, CAMs] is refined by a
hard-label dense CRF over all 21 VOC labels (as the official code saves full 21-channel arrays, which sets the
unary of every other label to (1 - gt_prob) / 20), and its argmax is saved: <out>/la/<id>.png, <out>/ha/<id>.png.
A low alpha gives a large background score, so la's foreground is confident; a high alpha shrinks the
background score, so what ha still calls background is confident background.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ppcseg.cam.infer import load_cams
from ppcseg.data.voc import NUM_CLASSES, load_image, read_class_labels, read_ids, save_mask, voc_dirs
from ppcseg.refine.crf import crf_from_labels
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import finish_resumable_dir, resumable_dir
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("affinity.low_alpha", "affinity.high_alpha", "affinity.crf")
SPLIT = "train_aug"
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (JPEGImages, ImageSets, cls_labels.json)")
    parser.add_argument("--cams", required=True, help="folder of <id>.npz CAM files written by infer-cam")
    parser.add_argument("--out", required=True, help="output folder; gets la/<id>.png and ha/<id>.png")


def background_argmax(classes: np.ndarray, cams: np.ndarray, alpha: float) -> np.ndarray:
    """VOC label map (H, W) of argmax over [(1 - max CAM)^alpha, CAMs]; background wins ties."""
    if cams.shape[0] == 0:
        return np.zeros(cams.shape[1:], dtype=np.int64)
    bg = np.power(1.0 - cams.max(axis=0, keepdims=True), alpha)
    lookup = np.concatenate([[0], np.asarray(classes, dtype=np.int64)])
    return lookup[np.argmax(np.concatenate([bg, cams]), axis=0)]


def alpha_label_map(image: np.ndarray, classes: np.ndarray, cams: np.ndarray, alpha: float, crf: dict) -> np.ndarray:
    """The CRF-refined hard label map (H, W) uint8 of one alpha."""
    hard = background_argmax(classes, cams, alpha)
    # pydensecrf needs a writable image buffer; decoded images are read-only views.
    marginals = crf_from_labels(np.require(image, requirements=["C", "W"]), hard, NUM_CLASSES, **crf)
    return np.argmax(marginals, axis=0).astype(np.uint8)


def per_image_pool(
    work: Callable[[str], None], ids: list[str], threads: int | None, desc: str, init: Callable[..., None], init_args
) -> None:
    """Run `work(id)` for every id, over `threads` processes (inline for one), logging images/s."""
    start = time.monotonic()
    processes = max(1, min(threads or 1, len(ids)))
    if processes == 1:
        init(*init_args)
        for image_id in progress(ids, desc=desc):
            work(image_id)
    else:
        with multiprocessing.Pool(processes, initializer=init, initargs=init_args) as pool:
            for _ in progress(pool.imap_unordered(work, ids), total=len(ids), desc=desc):
                pass
    if ids:
        elapsed = time.monotonic() - start
        log.info(
            "%s: %d images in %.1f s (%.2f images/s, %d processes)",
            desc,
            len(ids),
            elapsed,
            len(ids) / max(elapsed, 1e-9),
            processes,
        )


_STATE: dict[str, Any] = {}


def _init(root: Path, cams_dir: Path, out: Path, labels: dict[str, list[int]], cfg: dict[str, Any]) -> None:
    _STATE.update(root=root, cams=cams_dir, out=out, labels=labels, cfg=cfg)


def _work(image_id: str) -> None:
    cfg = _STATE["cfg"]
    image = load_image(voc_dirs(_STATE["root"])["images"] / f"{image_id}.jpg")
    classes, cams = load_cams(_STATE["cams"], image_id, _STATE["labels"][image_id], image.shape[:2])
    for name, alpha in (("la", cfg["low_alpha"]), ("ha", cfg["high_alpha"])):
        save_mask(_STATE["out"] / name / f"{image_id}.png", alpha_label_map(image, classes, cams, alpha, cfg["crf"]))


def pending(ids: Iterable[str], out: Path, subdirs: tuple[str, ...]) -> list[str]:
    """Ids whose outputs are not all present yet (a restarted stage redoes only those)."""
    return [i for i in ids if not all((out / d / f"{i}.png").is_file() for d in subdirs)]


def check_labels(root: Path, ids: list[str]) -> dict[str, list[int]]:
    labels = read_class_labels(root)
    missing = [i for i in ids if i not in labels]
    if missing:
        raise InputError(
            f"{voc_dirs(root)['labels']}: no image-level labels for {len(missing)} image(s), e.g. {missing[:3]}"
        )
    return labels


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    cfg = params["affinity"]
    root = Path(args.data)
    ids = read_ids(root, SPLIT)
    labels = check_labels(root, ids)
    work = resumable_dir(args.out)
    todo = pending(ids, work, ("la", "ha"))
    log.info(
        "affinity-labels: %d images, %d already done, alphas %s/%s",
        len(ids),
        len(ids) - len(todo),
        cfg["low_alpha"],
        cfg["high_alpha"],
    )
    per_image_pool(_work, todo, args.threads, "affinity-labels", _init, (root, Path(args.cams), work, labels, cfg))
    finish_resumable_dir(args.out)
