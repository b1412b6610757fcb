"""Stage `export-predictions`: VOC palette PNGs of the segmentation network for a split (e.g. the VOC test server).

    ppcseg export-predictions --params params.yaml --data ROOT --checkpoint CKPT --split test --out DIR

Writes <DIR>/<id>.png for every id of the split; a run restarted after a kill predicts only the missing images.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ppcseg.data.voc import load_image, save_mask, voc_dirs
from ppcseg.per_image import Context, PerImageStage, add_per_image_arguments, file_input, run_per_image
from ppcseg.segment.checkpoint import load_segmentor
from ppcseg.segment.inference import PROTOCOLS, InferenceProtocol, device, predict_labels

PARAMS_KEYS: tuple[str, ...] = ("segmentation",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_per_image_arguments(parser, "folder of <id>.png palette masks")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by train-seg --out")
    parser.add_argument("--split", required=True, help="image list, e.g. val or test")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="msf-crf")


def _init(ctx: Context) -> tuple[torch.nn.Module, InferenceProtocol]:
    model, _ = load_segmentor(ctx.args.checkpoint, device())
    return model, InferenceProtocol.from_params(ctx.args.protocol, ctx.params["segmentation"]["test"])


def _work(image_id: str, ctx: Context, state: tuple[torch.nn.Module, InferenceProtocol]) -> None:
    model, protocol = state
    image = load_image(voc_dirs(ctx.root)["images"] / f"{image_id}.jpg")
    save_mask(ctx.out / f"{image_id}.png", predict_labels(model, image, protocol))


STAGE = PerImageStage(
    name="export_predictions",
    params_keys=PARAMS_KEYS,
    outputs=("{}.png",),
    splits=lambda args, params: [args.split],
    inputs=lambda args, ids: {"checkpoint": file_input(args.checkpoint)},
    work=_work,
    pooled=False,
    init=_init,
    labels=False,  # the test split has none
    flags=("split", "protocol"),  # not params: they belong to the output's identity too
)


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_per_image(STAGE, args, params)
