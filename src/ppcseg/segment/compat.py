"""Import-time compatibility of mmsegmentation 1.2.2 with mmcv-lite 2.1.0 and torch >= 2.6. Import before mmseg.

* mmcv-lite has no compiled ops, yet a few mmseg modules import `mmcv.ops` at module level. We register a light
  `mmcv.ops` that exposes the pure-PyTorch `point_sample` / `bilinear_grid_sample` shipped in mmcv-lite plus a
  pure-PyTorch `sigmoid_focal_loss`; any other op raises ModuleNotFoundError, which mmseg's optional imports expect.
  A full mmcv with compiled ops is used as it is. DataLoader workers inherit the module when forked.
* torch >= 2.6 loads checkpoints with weights_only=True, which mmengine's own Runner checkpoints (numpy scalars,
  HistoryBuffer) fail. Checkpoints under a work folder this process registered with `trust_checkpoints_under` are
  loaded in full; every other file (external pretrained weights, exported models) only with weights_only=True.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ppcseg.utils.errors import InputError

MMCV_MIN, MMCV_MAX = "2.0.0rc4", "2.2.0"  # what mmsegmentation 1.2.2 accepts
_TRUSTED_DIRS: list[Path] = []


def _check_mmcv() -> None:
    from packaging.version import parse

    try:
        import mmcv
    except ImportError as err:
        raise ImportError("mmcv is missing: install mmcv-lite==2.1.0 (mmsegmentation 1.2.2 needs mmcv<2.2.0)") from err
    if not parse(MMCV_MIN) <= parse(mmcv.__version__) < parse(MMCV_MAX):
        raise ImportError(
            f"mmcv {mmcv.__version__} is installed, but mmsegmentation 1.2.2 needs {MMCV_MIN} <= mmcv < {MMCV_MAX}: "
            "pip install 'mmcv-lite==2.1.0' (see envs/requirements.txt)"
        )


def sigmoid_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float = 0.25,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pure-PyTorch stand-in for mmcv's compiled op: input (N, C) logits, target (N,) class indices (C = none)."""
    num_classes = input.size(1)
    onehot = F.one_hot(target.long(), num_classes + 1)[:, :num_classes].type_as(input)
    prob = input.sigmoid()
    pt = prob * onehot + (1 - prob) * (1 - onehot)
    alpha_t = alpha * onehot + (1 - alpha) * (1 - onehot)
    loss = F.binary_cross_entropy_with_logits(input, onehot, reduction="none") * alpha_t * (1 - pt).pow(gamma)
    if weight is not None:
        loss = loss * weight.view(-1, 1)
    if reduction == "mean":
        return loss.sum() / input.size(0)  # mmcv's convention: sum over classes, mean over samples
    if reduction == "sum":
        return loss.sum()
    return loss


def _install_light_ops() -> None:
    if "mmcv.ops" in sys.modules or importlib.util.find_spec("mmcv._ext") is not None:
        return  # already installed, or a full mmcv with compiled ops
    import mmcv

    ops_dir = Path(mmcv.__file__).parent / "ops"
    spec = importlib.util.spec_from_file_location("mmcv.ops.point_sample", ops_dir / "point_sample.py")
    point_sample_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(point_sample_mod)  # torch-only module: safe without _ext

    ops = types.ModuleType("mmcv.ops", "mmcv-lite ops without compiled extensions (ppcseg.segment.compat)")
    ops.__file__ = __file__
    ops.__path__ = []  # a package, but no submodule can be imported from it
    ops.point_sample = point_sample_mod.point_sample
    ops.bilinear_grid_sample = point_sample_mod.bilinear_grid_sample
    ops.sigmoid_focal_loss = sigmoid_focal_loss

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ModuleNotFoundError(
            f"mmcv.ops.{name} needs mmcv's compiled ops, which mmcv-lite lacks (only point_sample, "
            "bilinear_grid_sample and sigmoid_focal_loss are provided)",
            name=f"mmcv.ops.{name}",
        )

    ops.__getattr__ = __getattr__
    sys.modules["mmcv.ops.point_sample"] = point_sample_mod
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops


def trust_checkpoints_under(folder: str | Path) -> None:
    """Allow full unpickling of mmengine checkpoints below `folder` (a work folder this pipeline writes)."""
    path = Path(folder).resolve()
    if path not in _TRUSTED_DIRS:
        _TRUSTED_DIRS.append(path)


def is_trusted(path: str | Path) -> bool:
    resolved = Path(path).expanduser().resolve()
    return any(resolved.is_relative_to(folder) for folder in _TRUSTED_DIRS)


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's loader for local files, with torch's safe loading for everything not in a trusted work folder."""
    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{filename} can not be found.")
    if is_trusted(path):
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for unsafe or corrupt files
        raise InputError(
            f"{path}: cannot load safely with weights_only=True ({type(err).__name__}); this file was not written "
            "in this stage's work folder, so it is never unpickled in full. Save it as a plain state dict."
        ) from err


def _register_checkpoint_loader() -> None:
    from mmengine.runner import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", force=True)(load_local_checkpoint)


def quiet_loggers() -> None:
    """mmengine prints large init tables and mmcv-lite warns about an op it cannot build: keep stage logs readable."""
    warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
    warnings.filterwarnings("ignore", message=".*build_loss.*")
    from mmengine.logging import MMLogger

    # The Runner makes its own logger (INFO, with a file); this one serves model building outside a Runner.
    MMLogger.get_instance("mmengine", log_level="WARNING").setLevel(logging.WARNING)


_check_mmcv()
_install_light_ops()
_register_checkpoint_loader()
quiet_loggers()
