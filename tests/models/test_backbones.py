"""build_backbone: every registered backbone gives stride-8 taps matching its `channels`; local weights only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppcseg.models.backbones import BACKBONES, build_backbone
from ppcseg.utils.errors import InputError

torch.set_num_threads(2)


@pytest.mark.parametrize("name", BACKBONES)
def test_taps_at_stride_8(name: str) -> None:
    net = build_backbone(name, None).train()
    with torch.set_grad_enabled(name == "tiny"):  # backward of the big ones is covered elsewhere
        taps = net(torch.randn(2, 3, 48, 64))
    assert set(taps) == {"conv4", "conv5", "conv6"}
    for key, tap in taps.items():
        assert tuple(tap.shape) == (2, net.channels[key], 6, 8)
    assert net.new_layers() == []
    if name == "tiny":
        taps["conv6"].mean().backward()
        assert all(p.grad is not None for p in net.parameters())


def test_torchvision_resnet_freezing_and_local_weights(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)  # torchvision layout, fc.* included
    net = build_backbone("resnet50", path).train()
    assert torch.equal(net.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    assert not net.bn1.training and not net.layer3[0].bn1.training
    assert not any(p.requires_grad for p in net.layer1.parameters()) and not net.conv1.weight.requires_grad
    assert net.layer2[0].conv1.weight.requires_grad and not net.layer2[0].bn1.weight.requires_grad
    assert build_backbone("resnet50", None, freeze=False).train().bn1.training

    with pytest.raises(InputError, match="resnet50.pth: weights do not match"):
        build_backbone("resnet101", path)
    with pytest.raises(InputError, match="not found"):
        build_backbone("resnet50", tmp_path / "absent.pth")


def test_unknown_backbone() -> None:
    with pytest.raises(InputError, match="backbone 'vgg16' is unknown"):
        build_backbone("vgg16", None)
