"""Stage `export-predictions`: VOC palette PNGs of the segmentation network for a split (e.g. the VOC test server).

    ppcseg export-predictions --params params.yaml --data ROOT --checkpoint CKPT --split test --out DIR

Writes <DIR>/<id>.png for every id of the split; a run restarted after a kill predicts only the missing images.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ppcseg.data.voc import load_image, read_ids, save_mask, voc_dirs
from ppcseg.segment.checkpoint import load_segmentor
from ppcseg.segment.inference import PROTOCOLS, InferenceProtocol, device, predict_labels
from ppcseg.utils.per_image import fingerprint, finish_partial, folder_inputs, open_partial, pending
from ppcseg.utils.progress import progress

PARAMS_KEYS: tuple[str, ...] = ("segmentation",)
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC root (JPEGImages, ImageSets/Segmentation)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by train-seg --out")
    parser.add_argument("--split", required=True, help="image list, e.g. val or test")
    parser.add_argument("--out", required=True, help="folder of <id>.png palette masks")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="msf-crf")


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    protocol = InferenceProtocol.from_params(args.protocol, params["segmentation"]["test"])
    root, checkpoint = Path(args.data), Path(args.checkpoint)
    ids = read_ids(root, args.split)
    images = voc_dirs(root)["images"]
    # The split and protocol are flags, not params: they belong to the run's identity too.
    identity = fingerprint(
        params | {"flags": {"split": args.split, "protocol": args.protocol}},
        (*PARAMS_KEYS, "flags"),
        {
            "images": folder_inputs(images, [f"{i}.jpg" for i in ids]),
            "checkpoint": folder_inputs(checkpoint.parent, [checkpoint.name]),
        },
    )
    partial = open_partial(args.out, identity)
    todo = pending(ids, partial)
    log.info("export-predictions: %d of %d images of '%s' to predict", len(todo), len(ids), args.split)
    if todo:
        model, _ = load_segmentor(args.checkpoint, device())
        for image_id in progress(todo, desc=f"export {args.split}"):
            save_mask(
                partial / f"{image_id}.png", predict_labels(model, load_image(images / f"{image_id}.jpg"), protocol)
            )
    finish_partial(args.out, [f"{i}.png" for i in ids], identity, stage="export_predictions")
