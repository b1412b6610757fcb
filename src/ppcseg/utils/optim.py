"""The official PolyOptimizer (parameter groups, poly learning rate, its SGD momentum quirk), shared by CAM and
AffinityNet training."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Multipliers of the base lr for the four SGD groups (as the official optimiser), and whether weight decay applies.
GROUP_LR_MULT = (1.0, 2.0, 10.0, 20.0)
GROUP_DECAY = (True, False, True, False)


def poly_param_groups(
    model: nn.Module, new_modules: list[nn.Module], lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Backbone weights 1x, backbone biases 2x (no decay), new-layer weights 10x, new-layer biases 20x (no decay).

    Only conv and GroupNorm parameters that train; BatchNorm is never optimised. Each group carries `lr_mult` for the
    poly schedule.
    """
    new = {id(m) for module in new_modules for m in module.modules()}
    groups: list[list[nn.Parameter]] = [[], [], [], []]
    for module in model.modules():
        if not isinstance(module, nn.Conv2d | nn.GroupNorm):
            continue
        offset = 2 if id(module) in new else 0
        if module.weight is not None and module.weight.requires_grad:
            groups[offset].append(module.weight)
        if module.bias is not None and module.bias.requires_grad:
            groups[offset + 1].append(module.bias)
    return [
        {"params": params, "lr": lr * mult, "lr_mult": mult, "weight_decay": weight_decay if decay else 0.0}
        for params, mult, decay in zip(groups, GROUP_LR_MULT, GROUP_DECAY, strict=True)
    ]


def poly_sgd(groups: list[dict[str, Any]], lr: float, weight_decay: float, *, fix_momentum: bool) -> torch.optim.SGD:
    """SGD over the poly groups (each carries its own weight decay), with the official momentum unless fixed.

    [quirk] the official PolyOptimizer passes weight decay where SGD expects momentum, so momentum is the weight decay
    (5e-4); `fix_momentum` (params `cam.fix_sgd_momentum`) gives the intended 0.9 (docs/faithfulness.md).
    """
    momentum = 0.9 if fix_momentum else weight_decay
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=0.0)


def poly_lr(base: float, step: int, horizon: int, power: float) -> float:
    """base * (1 - t / T) ** power at step t (0-based) of a T-step schedule; past T the last value stays, as the
    official PolyOptimizer keeps it."""
    return base * (1 - min(step, horizon - 1) / horizon) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Give every group `lr` times its multiplier; returns `lr`."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    return lr
