"""The official PolyOptimizer parameter groups, shared by CAM and AffinityNet training."""

from __future__ import annotations

from typing import Any

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
