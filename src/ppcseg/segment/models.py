"""Segmentation models registered in mmseg's registries (imported by every config through `custom_imports`).

* `PPCBackbone`: the project's own backbones (`ppcseg.models.backbones.build_backbone`: ResNet-38, tiny) as an mmseg
  backbone returning its taps in a fixed order.
* `PPCEncoderDecoder`: mmseg's EncoderDecoder that fills the decode head's `in_channels` from the backbone, so a config
  need not know the channels of the tiny demo backbone.
* `DeepLabV2Head`: the DeepLab-v2 ASPP classifier (sum of dilated 3x3 classifiers).
* `LargeFOVHead`: the DeepLab-v1 LargeFOV-style head of the official segmentation code (docs/faithfulness.md).
* `WsegASPPHead`: the BN ASPP head that the official segmentation code calls "deeplabv2" (its released models).
* `DeepLabOptimWrapperConstructor`: the official parameter groups (conv weights 1x, conv biases 2x, head 10x / 20x,
  BN affine parameters never optimised).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.models.decode_heads.aspp_head import ASPPHead
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

TAPS: tuple[str, ...] = ("conv4", "conv5", "conv6")


@MODELS.register_module()
class PPCBackbone(BaseModule):
    """A `ppcseg.models.backbones` network as an mmseg backbone; forward returns (conv4, conv5, conv6).

    bn_momentum: BN running-statistics momentum (the official ResNet-38 segmentation code uses 0.0003).
    The backbone is built with `freeze=False`: the official segmentation training never calls the BN-freezing
    `train()` override, so BN uses batch statistics and every convolution is trained.
    """

    def __init__(
        self, arch: str = "resnet38", weights: str | None = None, bn_momentum: float | None = None, init_cfg=None
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        from ppcseg.models.backbones import build_backbone

        self.arch = arch
        self.net = build_backbone(arch, weights, freeze=False)
        self.out_channels = tuple(int(self.net.channels[tap]) for tap in TAPS)
        if bn_momentum is not None:
            for module in self.net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = bn_momentum

    def init_weights(self) -> None:
        pass  # weights come from build_backbone (a local pretrained file or its own init), never from mmengine

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        taps = self.net(x)
        return tuple(taps[tap] for tap in TAPS)


@MODELS.register_module()
class PPCEncoderDecoder(EncoderDecoder):
    """EncoderDecoder whose decode head gets `in_channels` from the backbone when the config leaves it None."""

    def _init_decode_head(self, decode_head) -> None:
        if decode_head.get("in_channels") is None:
            decode_head = decode_head.copy()
            decode_head["in_channels"] = self.backbone.out_channels[decode_head.get("in_index", -1)]
        super()._init_decode_head(decode_head)


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """DeepLab-v2 ASPP: parallel dilated 3x3 classifiers straight to class scores, summed (no BN, no image pooling)."""

    def __init__(self, dilations: tuple[int, ...] = (6, 12, 18, 24), **kwargs) -> None:
        kwargs.setdefault("init_cfg", dict(type="Normal", std=0.01, layer="Conv2d"))
        super().__init__(**kwargs)
        del self.conv_seg  # the classifiers below are the output layer
        self.classifiers = nn.ModuleList(
            nn.Conv2d(self.in_channels, self.out_channels, 3, padding=d, dilation=d) for d in dilations
        )

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        if self.dropout is not None:
            x = self.dropout(x)
        return sum(classifier(x) for classifier in self.classifiers)


@MODELS.register_module()
class LargeFOVHead(BaseDecodeHead):
    """DeepLab-v1 LargeFOV-style head: 3x3 dilated conv -> norm -> ReLU -> 1x1 -> norm -> ReLU -> dropout -> 1x1."""

    def __init__(self, dilation: int = 12, **kwargs) -> None:
        super().__init__(**kwargs)
        conv_kw = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.convs = nn.Sequential(
            ConvModule(self.in_channels, self.channels, 3, padding=dilation, dilation=dilation, **conv_kw),
            ConvModule(self.channels, self.channels, 1, **conv_kw),
        )

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.convs(self._transform_inputs(inputs)))


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DeepLabOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """The official `get_parameter_groups`: only Conv2d parameters are optimised (BN affine parameters keep their
    pretrained or initial values). Learning-rate multipliers: backbone weights 1, backbone biases 2, head weights
    10, head biases 20; biases get no weight decay.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, "module"):
            model = model.module
        base_lr = self.optimizer_cfg["lr"]
        weight_decay = self.optimizer_cfg.get("weight_decay", 0.0)
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(h, b): [] for h in (False, True) for b in (False, True)}
        for name, module in model.named_modules():
            if not isinstance(module, nn.Conv2d):
                continue
            in_head = not name.startswith("backbone.")
            groups[(in_head, False)].append(module.weight)
            if module.bias is not None:
                groups[(in_head, True)].append(module.bias)
        param_groups = []
        for (in_head, is_bias), params in groups.items():
            if params:
                mult = (10 if in_head else 1) * (2 if is_bias else 1)
                param_groups.append(
                    dict(params=params, lr=base_lr * mult, weight_decay=0.0 if is_bias else weight_decay)
                )
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg["params"] = param_groups
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault("type", "OptimWrapper")
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))


@MODELS.register_module()
class WsegASPPHead(ASPPHead):
    """The "deeplabv2" head of the official segmentation code: a DeepLab-v3-style ASPP with BN (dilated 3x3 branches
    + image pooling) fused by a 1x1 conv (mmseg's ASPPHead fuses with a 3x3). Used for its released checkpoints."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bottleneck = ConvModule(
            (len(self.dilations) + 1) * self.channels,
            self.channels,
            1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg,
        )
