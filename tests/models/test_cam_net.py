"""CamNet: the SEAM and EPS heads, PCM, parameter groups, and checkpoints that rebuild the network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppcseg.models.backbones import build_backbone
from ppcseg.models.cam_net import CamNet, build_cam_net, cam_net_meta, load_cam_net
from ppcseg.utils.checkpoint import save_checkpoint
from ppcseg.utils.errors import InputError

torch.set_num_threads(2)
CAM = {"method": "seam", "ppc": True, "backbone": "tiny", "crop_size": 48}


@pytest.mark.parametrize("method,ppc", [("seam", True), ("seam", False), ("eps", True), ("eps", False)])
def test_outputs_and_heads(method: str, ppc: bool) -> None:
    torch.manual_seed(0)
    net = build_cam_net(CAM | {"method": method, "ppc": ppc}, None).train()
    out = net(torch.randn(2, 3, 48, 40))
    assert tuple(out["cam"].shape) == (2, 21, 6, 5)
    assert net.background_channel == (0 if method == "seam" else 20)
    assert isinstance(net.dropout7, torch.nn.Dropout2d) == (method == "seam")
    assert (out["proj"] is not None) == ppc and (net.fc_proj is not None) == ppc
    if ppc:
        assert tuple(out["proj"].shape) == (2, 128, 6, 5) and (out["proj"] >= 0).all()
    eps_baseline = method == "eps" and not ppc
    assert (out["cam_rv"] is None) == eps_baseline
    if not eps_baseline:
        assert tuple(out["cam_rv"].shape) == (2, 21, 6, 5)
    assert tuple(CamNet.upsample(out["cam"], (48, 40)).shape) == (2, 21, 48, 40)


def test_pcm_input_and_gradient_flow() -> None:
    torch.manual_seed(0)
    net = build_cam_net(CAM | {"method": "eps"}, None).eval()
    cam = torch.randn(2, 21, 5, 5) * 3
    pcm_in = net._pcm_input(cam)
    fg = pcm_in[:, :20]
    # one foreground channel per pixel survives, every value in [0, 1], background (last) = 1 - max foreground
    assert ((fg > 0).sum(dim=1) <= 1).all() and fg.min() >= 0 and fg.max() <= 1
    assert torch.allclose(pcm_in[:, 20], 1 - fg.amax(dim=1))
    peak = torch.relu(cam).flatten(2).amax(2)[..., None, None]
    norm = torch.relu(torch.relu(cam) - 1e-5) / (peak + 1e-5)  # max-normalised, no min subtraction
    winner = norm[:, :20] == norm[:, :20].amax(dim=1, keepdim=True)
    assert torch.equal(fg, torch.where(winner, norm[:, :20], torch.zeros_like(fg)))

    out = net(torch.randn(2, 3, 40, 40))
    out["cam_rv"].sum().backward()
    # the PCM trains f8_3/f8_4/f9 only: the CAM input and the backbone taps are detached
    assert net.f9.weight.grad is not None and net.f8_3.weight.grad is not None
    assert net.fc8.weight.grad is None and all(p.grad is None for p in net.backbone.parameters())


def test_param_groups() -> None:
    resnet = CamNet(build_backbone("resnet38", None), "seam", True)
    groups = resnet.param_groups(0.01, 5e-4)
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.02, 0.1, 0.2])
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0, 5e-4, 0.0]
    new = [resnet.fc8.weight, resnet.fc_proj.weight, resnet.f8_3.weight, resnet.f8_4.weight, resnet.f9.weight]
    assert {id(p) for p in groups[2]["params"]} == {id(p) for p in new} and not groups[1]["params"]
    grouped = {id(p) for g in groups for p in g["params"]}
    bn = [p for m in resnet.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    assert not grouped & {id(p) for p in bn}
    assert id(resnet.backbone.conv1a.weight) not in grouped and id(resnet.backbone.b3.conv_branch1.weight) in grouped
    tiny = build_cam_net(CAM, None).param_groups(0.1, 1e-4)
    assert tiny[1]["params"] and tiny[1]["weight_decay"] == 0.0  # GroupNorm biases: 2x, no decay


def test_checkpoint_round_trip_and_mismatch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cam = CAM | {"method": "eps"}
    net = build_cam_net(cam, None)
    path = tmp_path / "cam.pt"
    save_checkpoint(path, {"model": net.state_dict()}, cam_net_meta(cam))
    loaded = load_cam_net(path)
    assert not loaded.training and loaded.background_channel == 20 and loaded.meta["method"] == "eps"
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x)["cam_rv"], net.eval()(x)["cam_rv"])

    save_checkpoint(path, {"model": net.state_dict()}, cam_net_meta(cam) | {"num_classes": 81})
    with pytest.raises(InputError, match="cam.pt: checkpoint has num_classes=81, expected 21"):
        load_cam_net(path)
    save_checkpoint(path, {"model": net.state_dict()}, cam_net_meta(cam) | {"arch": "affinity_net"})
    with pytest.raises(InputError, match="cam.pt: checkpoint has arch='affinity_net'"):
        load_cam_net(path)
    save_checkpoint(path, {"model": net.state_dict()}, cam_net_meta(cam | {"ppc": False}))
    with pytest.raises(InputError, match="cam.pt: model state does not match"):
        load_cam_net(path)
