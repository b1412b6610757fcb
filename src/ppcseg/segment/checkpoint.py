"""Segmentation configs and the exported model checkpoint.

The exported checkpoint (`train-seg --out`) holds only tensors and plain values (ppcseg.utils.checkpoint format):
the state dict plus the resolved mmseg config as a plain dict, so evaluation rebuilds exactly the trained model with
weights_only=True loading and no pretrained download or file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ppcseg.segment.compat import load_local_checkpoint
from ppcseg.utils.checkpoint import load_checkpoint, save_checkpoint
from ppcseg.utils.errors import InputError

# The mmseg config files are code the segmentation stages run too (their code dependencies, workflow/stage_deps).
CODE_DATA: tuple[str, ...] = ("configs",)
CONFIG_DIR = Path(__file__).parent / CODE_DATA[0]
KIND = "mmseg-segmentor"


def available_configs() -> list[str]:
    return sorted(p.name for p in CONFIG_DIR.glob("*.py"))


def config_path(name: str | Path) -> Path:
    """A config file name from segment/configs/, or a path to a config file."""
    path = Path(name)
    if path.is_file():
        return path
    if (CONFIG_DIR / path).is_file():
        return CONFIG_DIR / path
    raise InputError(f"segmentation.config: '{name}' is not a file nor one of: {', '.join(available_configs())}")


def load_config(name: str | Path) -> Config:
    return Config.fromfile(str(config_path(name)))


def config_backbone(cfg: Config) -> str:
    """The backbone a segmentation config builds, named as `segmentation.backbone` names it."""
    backbone = cfg.model.backbone
    if backbone.type == "PPCBackbone":
        return backbone.get("arch", "resnet38")
    if backbone.type.startswith("ResNet"):
        return f"resnet{backbone.depth}"
    return backbone.type


def plain_config(value: Any) -> Any:
    """Config values as dicts, lists and scalars only (what weights_only loading accepts): the model config a
    checkpoint's meta records, here and in a converted released checkpoint."""
    if isinstance(value, dict):
        return {str(k): plain_config(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_config(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InputError(f"config value {value!r} of type {type(value).__name__} cannot be stored in a checkpoint")


def export_checkpoint(runner_checkpoint: str | Path, out: str | Path, cfg: Config, config_name: str) -> None:
    """Copy the model weights of an mmengine Runner checkpoint (in the trusted work folder) to a tensors-only file."""
    ckpt = load_local_checkpoint(str(runner_checkpoint), map_location="cpu")
    state = {k: v.detach().clone() for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    model_cfg = plain_config(cfg.model.to_dict())
    meta = {
        "kind": KIND,
        "config_name": str(config_name),
        "model": model_cfg,
        "iter": int(ckpt.get("meta", {}).get("iter", -1)),
        "num_classes": int(model_cfg["decode_head"]["num_classes"]),
    }
    save_checkpoint(out, {"state_dict": state}, meta)


def _drop_pretrained(model_cfg: dict) -> None:
    """The state dict holds every weight: no initialiser may read (or download) pretrained files."""
    model_cfg.pop("pretrained", None)
    backbone = model_cfg.get("backbone", {})
    backbone.pop("init_cfg", None)
    if "weights" in backbone:
        backbone["weights"] = None


def load_segmentor(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained segmentor of an exported checkpoint in eval mode, and the checkpoint's meta."""
    from mmseg.registry import MODELS

    import ppcseg.segment.dataset  # noqa: F401  (registers the dataset and transforms)
    import ppcseg.segment.models  # noqa: F401

    ckpt = load_checkpoint(path, expect={"kind": KIND})
    model_cfg = Config(dict(model=ckpt["meta"]["model"])).model
    _drop_pretrained(model_cfg)
    init_default_scope("mmseg")
    model = MODELS.build(model_cfg)
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise InputError(
            f"{path}: weights do not match the stored model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(device).eval(), ckpt["meta"]
