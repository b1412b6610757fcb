"""Stage `convert-released`: start a stage from the authors' released checkpoint instead of training it.

    ppcseg download --params P --source cam.released --out data/released/cam.pth
        downloads `cam.released` (ppcseg.data.download, verified like every source);
    ppcseg convert-released --params P --entry cam --file data/released/cam.pth --out work/runs/0/cam/checkpoint.pt
        converts it from its official layout (`cam.released.layout`) to the checkpoint the trained stage would write;
    ppcseg convert-released --params P --entry cam --to-official --layout wseg-contrast --file CKPT --out FILE
        the way back: a ppcseg checkpoint as a state dict that the official code loads.

Stages: cam (read by infer_cam), affinity (random_walk), segmentation (eval_seg). Layouts: ppcseg.released.official.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from ppcseg.released import official
from ppcseg.utils.checkpoint import load_checkpoint, save_checkpoint
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_path

# The layout, and what the converted checkpoint's meta records or is checked against.
PARAMS_KEYS: tuple[str, ...] = ("{entry}.released", "cam.method", "cam.ppc", "cam.backbone", "affinity.radius")
STAGES: dict[str, tuple[str, ...]] = {
    "cam": official.CAM_LAYOUTS,
    "affinity": official.AFFINITY_LAYOUTS,
    "segmentation": official.SEG_LAYOUTS,
}
log = logging.getLogger("ppcseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entry", required=True, choices=list(STAGES), help="whose `<entry>.released` to use")
    parser.add_argument("--to-official", action="store_true", help="write the ppcseg checkpoint --file officially")
    parser.add_argument("--file", required=True, help="the official file (with --to-official: a ppcseg checkpoint)")
    parser.add_argument("--layout", help="official layout for --to-official (default: `<stage>.released.layout`)")
    parser.add_argument("--out", required=True, help="the ppcseg checkpoint (with --to-official: the official file)")


def released_entry(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """The stage's `<stage>.released` entry; InputError when it is not set."""
    entry = params[stage].get("released")
    if not entry:
        raise InputError(f"{stage}.released is not set: give url, sha256 (or md5) and layout of the released file")
    return entry


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    if args.to_official:
        name = args.layout or released_entry(params, args.entry)["layout"]
        export_official(args.entry, official.layout(name, "--layout"), args.file, args.out)
    else:
        convert(args.entry, params, args.file, args.out)


def _stage_layout(stage: str, name: str, key: str) -> official.Layout:
    lay = official.layout(name, key)
    if lay.stage != stage:
        raise InputError(f"{key}: '{name}' is a {lay.stage} layout; {stage} takes one of {', '.join(STAGES[stage])}")
    return lay


def convert(stage: str, params: dict[str, Any], file: str | Path, out: str | Path) -> None:
    """The official file as the checkpoint that `stage`'s training would have written."""
    entry = released_entry(params, stage)
    key = f"{stage}.released.layout"
    lay = _stage_layout(stage, entry.get("layout"), key)
    source = {"layout": lay.name, "module": lay.module, "url": entry.get("url"), "sha256": entry.get("sha256")}
    if stage == "cam":
        _check_cam_params(lay, params["cam"], key)
    model = official.build_project_model(lay, params["cam"])
    state = official.from_official(lay, official.read_official(file), model, file)
    if stage == "cam":
        save_checkpoint(out, {"model": state}, model.meta | {"released": source})
    elif stage == "affinity":
        from ppcseg.refine.affinity_net import ARCH

        meta = {"arch": ARCH, "backbone": "resnet38", "radius": params["affinity"]["radius"], "released": source}
        save_checkpoint(out, {"model": state}, meta)
    else:
        from ppcseg.segment.checkpoint import KIND

        model_cfg = official.segmentation_model_config(lay)
        meta = {
            "kind": KIND,
            "config_name": lay.config,
            "model": model_cfg,
            "iter": -1,
            "num_classes": int(model_cfg["decode_head"]["num_classes"]),
            "released": source,
        }
        save_checkpoint(out, {"state_dict": state}, meta)
    log.info("convert-released: %s (%s, %d tensors) -> %s", file, lay.name, len(state), out)


def _check_cam_params(lay: official.Layout, cam: dict[str, Any], key: str) -> None:
    """The released CAM network must be the route's: downstream stages follow cam.method, cam.ppc and cam.backbone."""
    want = official.cam_overrides(lay)
    for name, value in want.items():
        if cam[name] != value:
            raise InputError(
                f"{key}: '{lay.name}' is a {want['method']}{' + PPC' if want['ppc'] else ''} network on "
                f"{want['backbone']}, but cam.{name} is {cam[name]!r}: use that route's settings"
            )


def export_official(stage: str, lay: official.Layout, file: str | Path, out: str | Path) -> None:
    """A ppcseg checkpoint of `stage` as the official module's state dict (torch.save of a plain dict)."""
    lay = _stage_layout(stage, lay.name, "--layout")
    if stage == "segmentation":
        ckpt = load_checkpoint(file, expect={"kind": "mmseg-segmentor"})
        state = ckpt["state_dict"]
    else:
        expect = {"arch": "cam_net" if stage == "cam" else "affinitynet"}
        ckpt = load_checkpoint(file, expect=expect)
        state = ckpt["model"]
        if stage == "cam":
            _check_cam_params(lay, ckpt["meta"], "--layout")
    model = official.build_project_model(lay, {})
    result = official.to_official(lay, state, model, file)
    with atomic_path(out) as tmp:
        torch.save(result, tmp)
    log.info("convert-released: %s -> %s (%s, %d tensors)", file, out, lay.name, len(result))
