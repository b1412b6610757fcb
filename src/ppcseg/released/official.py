"""The authors' released checkpoints: key layouts of the official modules, converted to the project's and back.

The official code saves `torch.save(model.module.state_dict())` of these modules (names and shapes read from the
public repositories usr922/wseg, branches master and esp, and halbielee/EPS; see docs/faithfulness.md):

    layout                    official module                                       project module
    wseg-contrast             wseg network/resnet38_contrast.py (SEAM + PPC)        CamNet(method seam, ppc)
    wseg-seam                 wseg network/resnet38_SEAM.py (SEAM)                  CamNet(method seam)
    wseg-eps-contrast         wseg@esp network/resnet38_contrast.py (EPS + PPC)     CamNet(method eps, ppc)
    eps                       EPS network/resnet38_eps.py (EPS)                     CamNet(method eps)
    wseg-affinity             wseg network/resnet38_aff.py (AffinityNet)            AffinityNet(resnet38)
    wseg-deeplabv1-resnet38   wseg segmentation deeplabv1 + backbone resnet38       mmseg LargeFOVHead on ResNet-38
    wseg-deeplabv1-resnet101  wseg segmentation deeplabv1 + backbone resnet101      mmseg LargeFOVHead on ResNet-101s
    wseg-deeplabv2-resnet101  wseg segmentation deeplabv2 (BN ASPP) + resnet101     mmseg WsegASPPHead on ResNet-101s

Every parameter and buffer maps one to one (a renamed prefix); the one reordering is the ASPP fusion conv, whose
input blocks are (rate 6, 12, 18, 24, image pool) officially and (image pool, rate 6, ..., 24) in mmseg. A file is
accepted only if its keys are exactly the layout's (BatchNorm `num_batches_tracked` counters may be absent, as in
files saved by old PyTorch) with the layout's shapes; otherwise the first missing, unexpected or mis-shaped key is
named. Nothing is loaded partially.

wseg-contrast and wseg-eps-contrast hold the same tensors with the same shapes and differ only in the projection's
name (`fc_proj` / `proj_fc`), while their background channel is fc8's row 0 in one and row 20 in the other. The name
is checked exactly; nothing else in the file tells the two apart (where the background sits is a convention of the
training code, not stored), so a file whose projection was renamed converts under the wrong layout without error
(docs/faithfulness.md; tests/released/test_contrast_layouts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppcseg.utils.errors import InputError

CAM_LAYOUTS: tuple[str, ...] = ("wseg-contrast", "wseg-seam", "wseg-eps-contrast", "eps")
AFFINITY_LAYOUTS: tuple[str, ...] = ("wseg-affinity",)
SEG_LAYOUTS: tuple[str, ...] = ("wseg-deeplabv1-resnet38", "wseg-deeplabv1-resnet101", "wseg-deeplabv2-resnet101")
COUNTER = "num_batches_tracked"

_R101S_STEM = (
    ("backbone.stem.0.", "backbone.conv1.0."),
    ("backbone.stem.1.", "backbone.conv1.1."),
    ("backbone.stem.3.", "backbone.conv1.3."),
    ("backbone.stem.4.", "backbone.conv1.4."),
    ("backbone.stem.6.", "backbone.conv1.6."),
    ("backbone.stem.7.", "backbone.bn1."),
)
_LARGEFOV = (
    ("decode_head.convs.0.conv.", "conv_fov."),
    ("decode_head.convs.0.bn.", "bn_fov."),
    ("decode_head.convs.1.conv.", "conv_fov2."),
    ("decode_head.convs.1.bn.", "bn_fov2."),
    ("decode_head.conv_seg.", "cls_conv."),
)
_ASPP = (
    *((f"decode_head.aspp_modules.{i}.conv.", f"aspp.branch{i + 1}.0.") for i in range(4)),
    *((f"decode_head.aspp_modules.{i}.bn.", f"aspp.branch{i + 1}.1.") for i in range(4)),
    ("decode_head.image_pool.1.conv.", "aspp.branch5_conv."),
    ("decode_head.image_pool.1.bn.", "aspp.branch5_bn."),
    ("decode_head.bottleneck.conv.", "aspp.conv_cat.0."),
    ("decode_head.bottleneck.bn.", "aspp.conv_cat.1."),
    ("decode_head.conv_seg.", "cls_conv."),
)


@dataclass(frozen=True)
class Layout:
    """One official checkpoint layout and the project module that holds the same weights."""

    name: str
    stage: str  # cam | affinity | segmentation
    module: str  # the official module, for messages
    renames: tuple[tuple[str, str], ...]  # (project prefix, official prefix); first match wins, unmatched keys keep
    method: str | None = None  # CAM layouts: the project's cam.method / cam.ppc
    ppc: bool | None = None
    config: str | None = None  # segmentation layouts: the project's mmseg config
    # official key -> (to project, to official) for weights that are reordered, not only renamed
    reorder: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = field(
        default_factory=dict
    )


def _aspp_blocks(weight: torch.Tensor, order: list[int]) -> torch.Tensor:
    """The fusion conv's input channels as 5 equal blocks, rearranged to `order`."""
    blocks = weight.chunk(5, dim=1)
    return torch.cat([blocks[i] for i in order], dim=1)


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("wseg-contrast", "cam", "usr922/wseg network/resnet38_contrast.py", (("backbone.", ""),), "seam", True),
        Layout("wseg-seam", "cam", "usr922/wseg network/resnet38_SEAM.py", (("backbone.", ""),), "seam", False),
        Layout(
            "wseg-eps-contrast",
            "cam",
            "usr922/wseg@esp network/resnet38_contrast.py",
            (("backbone.", ""), ("fc_proj.", "proj_fc.")),
            "eps",
            True,
        ),
        Layout("eps", "cam", "halbielee/EPS network/resnet38_eps.py", (("backbone.", ""),), "eps", False),
        Layout("wseg-affinity", "affinity", "usr922/wseg network/resnet38_aff.py", (("backbone.", ""),)),
        Layout(
            "wseg-deeplabv1-resnet38",
            "segmentation",
            "usr922/wseg segmentation/lib/net/deeplabv1.py (backbone resnet38)",
            (("backbone.net.", "backbone."), *_LARGEFOV),
            config="deeplabv1-largefov_resnet38_1xb10-20k_voc12pseudo-448x448.py",
        ),
        Layout(
            "wseg-deeplabv1-resnet101",
            "segmentation",
            "usr922/wseg segmentation/lib/net/deeplabv1.py (backbone resnet101)",
            (*_R101S_STEM, *_LARGEFOV),
            config="deeplabv1-largefov_r101s_1xb10-20k_voc12pseudo-448x448.py",
        ),
        Layout(
            "wseg-deeplabv2-resnet101",
            "segmentation",
            "usr922/wseg segmentation/lib/net/deeplabv2.py (backbone resnet101)",
            (*_R101S_STEM, *_ASPP),
            config="deeplabv2-aspp_r101s_1xb10-20k_voc12pseudo-448x448.py",
            reorder={
                "aspp.conv_cat.0.weight": (
                    lambda w: _aspp_blocks(w, [4, 0, 1, 2, 3]),
                    lambda w: _aspp_blocks(w, [1, 2, 3, 4, 0]),
                )
            },
        ),
    )
}


def layout(name: str, key: str = "layout") -> Layout:
    if name not in LAYOUTS:
        raise InputError(f"{key}: '{name}' is not a known official layout; choose one of {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def official_key(lay: Layout, project_key: str) -> str:
    for ours, theirs in lay.renames:
        if project_key.startswith(ours):
            return theirs + project_key[len(ours) :]
    return project_key


def segmentation_model_config(lay: Layout) -> dict[str, Any]:
    """The mmseg model config (plain dict) of a segmentation layout, upsampling logits as the official nets do."""
    from ppcseg.segment.checkpoint import load_config, plain_config

    model = plain_config(load_config(lay.config).model.to_dict())
    model["decode_head"]["align_corners"] = True  # official: F.interpolate(..., align_corners=True) to the input
    return model


def build_project_model(lay: Layout, cam_params: dict[str, Any] | None = None) -> nn.Module:
    """The project module that holds a layout's weights, randomly initialised (no file is read)."""
    from ppcseg.models.resnet38 import ResNet38

    if lay.stage == "cam":
        from ppcseg.models.cam_net import CamNet, cam_net_meta

        net = CamNet(ResNet38(), method=lay.method, ppc=bool(lay.ppc))
        net.meta = cam_net_meta((cam_params or {}) | cam_overrides(lay))
        return net
    if lay.stage == "affinity":
        from ppcseg.refine.affinity_net import AffinityNet

        return AffinityNet(ResNet38())
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import ppcseg.segment.models  # noqa: F401  (registers the project's mmseg modules)

    init_default_scope("mmseg")
    return MODELS.build(Config(dict(model=segmentation_model_config(lay))).model)


def cam_overrides(lay: Layout) -> dict[str, Any]:
    """The cam params a CAM layout fixes."""
    return {"method": lay.method, "ppc": bool(lay.ppc), "backbone": "resnet38"}


def expected_layout(lay: Layout, model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Official key -> shape, in the project module's order."""
    return {official_key(lay, k): tuple(v.shape) for k, v in model.state_dict().items()}


def check_layout(lay: Layout, state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], path: Any) -> None:
    """InputError naming the first missing, then unexpected, then mis-shaped key of `state`."""
    what = f"{path}: not a '{lay.name}' checkpoint ({lay.module})"
    missing = [k for k in expected if k not in state and not k.endswith(COUNTER)]
    if missing:
        raise InputError(f"{what}: key '{missing[0]}' is missing ({len(missing)} of {len(expected)} keys missing)")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise InputError(f"{what}: unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected)")
    for key, value in state.items():
        if tuple(value.shape) != expected[key]:
            raise InputError(f"{what}: key '{key}' has shape {tuple(value.shape)}, expected {expected[key]}")


def check_finite(state: dict[str, torch.Tensor], path: Any) -> None:
    """InputError naming the first tensor (in the file's order) holding NaN or an infinity.

    Converted as they are, such weights give a complete folder of NaN CAMs or masks with exit 0; only an
    evaluation much later would stop, naming one of those outputs instead of the model.
    """
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise InputError(
                f"{path}: tensor '{key}' holds non-finite values ({bad} of {value.numel()} NaN or inf); "
                "refusing a model with non-finite weights"
            )


def from_official(lay: Layout, state: dict[str, torch.Tensor], model: nn.Module, path: Any) -> dict[str, torch.Tensor]:
    """The project state dict of `model` from an official state dict (`module.` prefixes already removed)."""
    own = model.state_dict()
    check_layout(lay, state, expected_layout(lay, model), path)
    check_finite(state, path)
    out = {}
    for key, value in own.items():
        theirs = official_key(lay, key)
        if theirs not in state:  # an absent BatchNorm counter
            out[key] = torch.zeros_like(value)
            continue
        tensor = state[theirs]
        if theirs in lay.reorder:
            tensor = lay.reorder[theirs][0](tensor)
        out[key] = tensor.detach().clone()
    return out


def to_official(lay: Layout, state: dict[str, torch.Tensor], model: nn.Module, path: Any) -> dict[str, torch.Tensor]:
    """An official state dict from the project state dict of `model` (checked against the model first)."""
    own = model.state_dict()
    identity = Layout(lay.name, lay.stage, "ppcseg", ())
    check_layout(identity, state, {k: tuple(v.shape) for k, v in own.items()}, path)
    check_finite(state, path)
    out = {}
    for key in own:
        theirs = official_key(lay, key)
        tensor = state[key] if key in state else torch.zeros_like(own[key])
        if theirs in lay.reorder:
            tensor = lay.reorder[theirs][1](tensor)
        out[theirs] = tensor.detach().clone()
    return out


def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict saved with torch.save, loaded with weights_only=True; `module.` (DataParallel) prefixes removed."""
    from ppcseg.models.resnet38 import read_torch_state_dict

    return read_torch_state_dict(path)
