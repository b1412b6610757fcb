"""Backbones at output stride 8 with one interface, shared by the CAM, affinity and segmentation stages.

Every backbone's forward returns the taps {'conv4', 'conv5', 'conv6'} (stride 8 each), and exposes
`channels: dict[str, int]`, `new_layers()` (backbone modules with no pretrained weights) and a `train()` that keeps
BatchNorm frozen and the early layers fixed when built with `freeze=True`.

    resnet38    ResNet-38 A1 (the paper's backbone); weights: MXNet .params or SEAM/PSA .pth
    resnet50    torchvision ResNet-50, layer3/layer4 dilated (2, 4); weights: a local torchvision state dict
    resnet101   same with ResNet-101
    tiny        a small GroupNorm CNN for the demo and the tests; random init

Weights are never downloaded here: the pipeline's download stage fetches them and passes the local file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ppcseg.models.resnet38 import ResNet38, freeze_modules, load_checked, read_torch_state_dict
from ppcseg.utils.errors import InputError

BACKBONES = ("resnet38", "resnet50", "resnet101", "tiny")


class TorchvisionResNet(nn.Module):
    """torchvision ResNet-50/101 with strides of layer3/layer4 replaced by dilation: output stride 8.

    Taps: conv4 = layer2 (512 ch), conv5 = layer3 (1024), conv6 = layer4 (2048), mirroring ResNet-38's stage roles.
    With `freeze=True` the stem and layer1 are fixed, like conv1a/b2 of ResNet-38.
    """

    def __init__(self, depth: int, freeze: bool = True) -> None:
        super().__init__()
        import torchvision

        factory = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[depth]
        net = factory(weights=None, replace_stride_with_dilation=[False, True, True])
        self.freeze = freeze
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.channels = {"conv4": 512, "conv5": 1024, "conv6": 2048}
        self.train()

    def frozen_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.layer1] if self.freeze else []

    def new_layers(self) -> list[nn.Module]:
        return []

    def train(self, mode: bool = True) -> TorchvisionResNet:
        super().train(mode)
        if self.freeze:
            freeze_modules(self, self.frozen_modules())
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        conv4 = self.layer2(x)
        conv5 = self.layer3(conv4)
        return {"conv4": conv4, "conv5": conv5, "conv6": self.layer4(conv5)}

    def load_weights(self, path: str | Path) -> None:
        """A torchvision ImageNet state dict (`resnet101-63fe2227.pth`); its `fc.*` classifier is ignored."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: ResNet weights file not found")
        load_checked(self, read_torch_state_dict(path), path)


def _conv_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """A six-conv CNN at output stride 8 for the demo DAG and tests (milliseconds per 96 px batch on a CPU).

    No normalisation layers: GroupNorm with small groups (instance-norm-like) divides each image's feature maps by
    their own spread, which blows up the noise of absent colours and made image-level classification fail on the
    demo data; BatchNorm would depend on how the batch is split across processes. Kaiming init keeps activations
    from shrinking through the layers, so it trains from random init within a few hundred steps.
    """

    channels: dict[str, int] = {"conv4": 128, "conv5": 128, "conv6": 256}

    def __init__(self, freeze: bool = True) -> None:
        super().__init__()
        self.freeze = freeze  # nothing to freeze: kept for the common interface
        self.stem = nn.Sequential(
            _conv_relu(3, 32), _conv_relu(32, 64, 2), _conv_relu(64, 64, 2), _conv_relu(64, 128, 2)
        )
        self.stage5 = _conv_relu(128, 128, dilation=2)
        self.stage6 = _conv_relu(128, 256, dilation=2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def new_layers(self) -> list[nn.Module]:
        return []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        conv4 = self.stem(x)
        conv5 = self.stage5(conv4)
        return {"conv4": conv4, "conv5": conv5, "conv6": self.stage6(conv5)}

    def load_weights(self, path: str | Path) -> None:
        load_checked(self, read_torch_state_dict(path), path)


def build_backbone(name: str, weights: str | Path | None, *, freeze: bool = True) -> nn.Module:
    """A backbone by name, with weights from a local file (None: random init).

    `freeze=False` gives plain train-mode BatchNorm and trainable early layers (segmentation fine-tuning).
    """
    if name == "resnet38":
        model: nn.Module = ResNet38(freeze=freeze)
    elif name in ("resnet50", "resnet101"):
        model = TorchvisionResNet(int(name[len("resnet") :]), freeze=freeze)
    elif name == "tiny":
        model = TinyBackbone(freeze=freeze)
    else:
        raise InputError(f"backbone '{name}' is unknown; choose one of {', '.join(BACKBONES)}")
    if weights is not None:
        model.load_weights(weights)
    return model
