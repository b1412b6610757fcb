"""ResNet-38 (model A1 of "Wider or Deeper", Wu et al. 2019) as used by PSA, SEAM, EPS and PPC (docs/faithfulness.md).

Pre-activation residual blocks, dilated to output stride 8. Module attributes use the SEAM/PSA names (`conv1a`,
`b2.conv_branch2a`, `bn7`, ...) so that their converted `.pth` files load directly; the original MXNet `.params`
file loads through `ppcseg.models.mxnet_params`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ppcseg.utils.errors import InputError

log = logging.getLogger("ppcseg")


class ResBlock(nn.Module):
    """Basic pre-activation block: BN-ReLU -> 3x3 conv -> BN-ReLU -> 3x3 conv, 1x1 shortcut when the shape changes."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        stride: int = 1,
        first_dilation: int | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(
            in_channels, mid_channels, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False
        )
        self.bn_branch2b1 = nn.BatchNorm2d(mid_channels)
        self.conv_branch2b1 = nn.Conv2d(mid_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output, BN-ReLU'd input): the latter is the `conv3/4/5` tap of the stage."""
        pre = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(pre)
        branch = self.conv_branch2a(pre)
        branch = self.conv_branch2b1(F.relu(self.bn_branch2b1(branch)))
        return shortcut + branch, pre


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck: BN-ReLU -> 1x1 -> BN-ReLU-Dropout2d -> 3x3 -> BN-ReLU-Dropout2d -> 1x1."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.same_shape = in_channels == out_channels
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, out_channels // 4, 1, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_channels // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(
            out_channels // 4, out_channels // 2, 3, padding=dilation, dilation=dilation, bias=False
        )
        self.bn_branch2b2 = nn.BatchNorm2d(out_channels // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_channels // 2, out_channels, 1, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(pre)
        branch = self.conv_branch2a(pre)
        branch = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(branch))))
        branch = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(branch))))
        return shortcut + branch, pre


class ResNet38(nn.Module):
    """ResNet-38 A1 trunk at output stride 8; forward returns the taps {'conv4', 'conv5', 'conv6'}.

    With `freeze=True` (the CAM and affinity stages), `train()` keeps every BatchNorm in eval mode with frozen affine
    parameters (ImageNet statistics) and freezes conv1a and the b2 stage, as the official code does.
    """

    channels: dict[str, int] = {"conv4": 512, "conv5": 1024, "conv6": 4096}

    def __init__(self, freeze: bool = True) -> None:
        super().__init__()
        self.freeze = freeze
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = ResBlock(64, 128, 128, stride=2)
        self.b2_1 = ResBlock(128, 128, 128)
        self.b2_2 = ResBlock(128, 128, 128)
        self.b3 = ResBlock(128, 256, 256, stride=2)
        self.b3_1 = ResBlock(256, 256, 256)
        self.b3_2 = ResBlock(256, 256, 256)
        self.b4 = ResBlock(256, 512, 512, stride=2)
        self.b4_1 = ResBlock(512, 512, 512)
        self.b4_2 = ResBlock(512, 512, 512)
        self.b4_3 = ResBlock(512, 512, 512)
        self.b4_4 = ResBlock(512, 512, 512)
        self.b4_5 = ResBlock(512, 512, 512)
        self.b5 = ResBlock(512, 512, 1024, first_dilation=1, dilation=2)
        self.b5_1 = ResBlock(1024, 512, 1024, dilation=2)
        self.b5_2 = ResBlock(1024, 512, 1024, dilation=2)
        self.b6 = BottleneckBlock(1024, 2048, dilation=4, dropout=0.3)
        self.b7 = BottleneckBlock(2048, 4096, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(4096)
        self.train()

    def frozen_modules(self) -> list[nn.Module]:
        return [self.conv1a, self.b2, self.b2_1, self.b2_2] if self.freeze else []

    def new_layers(self) -> list[nn.Module]:
        """Backbone layers that start from random init even with pretrained weights: none."""
        return []

    def train(self, mode: bool = True) -> ResNet38:
        super().train(mode)
        if self.freeze:
            freeze_modules(self, self.frozen_modules())
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.conv1a(x)
        for block in (self.b2, self.b2_1, self.b2_2, self.b3, self.b3_1, self.b3_2):
            x, _ = block(x)
        for block in (self.b4, self.b4_1, self.b4_2, self.b4_3, self.b4_4, self.b4_5):
            x, _ = block(x)
        x, conv4 = self.b5(x)
        x, _ = self.b5_1(x)
        x, _ = self.b5_2(x)
        x, conv5 = self.b6(x)
        x, _ = self.b7(x)
        return {"conv4": conv4, "conv5": conv5, "conv6": F.relu(self.bn7(x))}

    def load_weights(self, path: str | Path) -> None:
        """ImageNet weights from the MXNet `.params` file or a SEAM/PSA-converted PyTorch state dict."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: ResNet-38 weights file not found")
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head == (0x112).to_bytes(8, "little"):
            from ppcseg.models.mxnet_params import resnet38_state_dict

            state = {k: torch.from_numpy(v) for k, v in resnet38_state_dict(path).items()}
        else:
            state = read_torch_state_dict(path)
        load_checked(self, state, path)


def freeze_modules(root: nn.Module, frozen: list[nn.Module]) -> None:
    """BN in eval mode with frozen affine parameters everywhere; no gradient for the frozen modules."""
    for module in root.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)


def read_torch_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A PyTorch state dict saved with torch.save, loaded safely; {'state_dict': ...} and 'module.' prefixes unwrapped."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise InputError(f"{path}: cannot load weights ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a PyTorch state dict (expected a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_checked(module: nn.Module, state: dict[str, torch.Tensor | np.ndarray], path: str | Path) -> None:
    """Load every parameter and buffer of `module` from `state`; InputError on a missing key or a shape mismatch.

    Extra keys (an ImageNet classifier, heads of a trained model) are ignored and logged.
    """
    own = module.state_dict()
    needed = [k for k in own if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in state]
    if missing:
        raise InputError(
            f"{path}: weights do not match {type(module).__name__}: {len(missing)} of {len(needed)} keys missing "
            f"(first: {', '.join(missing[:3])})"
        )
    for key in needed:
        value = torch.as_tensor(state[key])
        if tuple(value.shape) != tuple(own[key].shape):
            raise InputError(
                f"{path}: '{key}' has shape {tuple(value.shape)}, {type(module).__name__} needs {tuple(own[key].shape)}"
            )
        with torch.no_grad():
            own[key].copy_(value.to(own[key].dtype))
    extra = sorted(set(state) - set(own))
    if extra:
        log.info("%s: ignored %d keys not in %s (e.g. %s)", path, len(extra), type(module).__name__, extra[0])
