"""ResNet-38 A1: shapes, output stride, freezing, and weight loading from MXNet .params and SEAM/PSA .pth files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ppcseg.models.mxnet_params import read_params, resnet38_name
from ppcseg.models.resnet38 import ResNet38
from ppcseg.utils.errors import InputError
from tests.models.mxnet_files import mx_name, write_params

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def source_state() -> dict[str, torch.Tensor]:
    """Random ResNet-38 weights in float16 (halves the files the tests write)."""
    gen = torch.Generator().manual_seed(1)
    state = ResNet38().state_dict()
    return {
        k: (torch.rand(v.shape, generator=gen) + 0.5).half()
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }


def test_forward_backward_taps_stride_and_freezing() -> None:
    torch.manual_seed(0)
    net = ResNet38()
    net.train()
    x = torch.randn(1, 3, 64, 64)
    taps = net(x)
    assert {k: tuple(v.shape) for k, v in taps.items()} == {
        "conv4": (1, 512, 8, 8),
        "conv5": (1, 1024, 8, 8),
        "conv6": (1, 4096, 8, 8),
    }
    assert net.channels == {"conv4": 512, "conv5": 1024, "conv6": 4096}
    assert net(torch.randn(1, 3, 40, 56))["conv6"].shape[-2:] == (5, 7)
    assert (taps["conv6"] >= 0).all()  # BN-ReLU output
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training and not m.weight.requires_grad and not m.bias.requires_grad for m in bns)
    assert net.b6.dropout_2b1.training and net.b7.dropout_2b2.p == 0.5 and net.b6.dropout_2b1.p == 0.3
    mean_before = net.bn7.running_mean.clone()
    taps["conv6"].mean().backward()
    assert torch.equal(net.bn7.running_mean, mean_before)  # eval-mode BN: ImageNet statistics untouched
    for frozen in (net.conv1a, net.b2, net.b2_1, net.b2_2):
        assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    assert net.b3.conv_branch2a.weight.grad is not None and net.b7.conv_branch2b2.weight.grad.abs().sum() > 0
    # b5's first conv is not dilated, the rest of b5 is (2) and b6/b7 use 4
    assert net.b5.conv_branch2a.dilation == (1, 1) and net.b5.conv_branch2b1.dilation == (2, 2)
    assert net.b7.conv_branch2b1.dilation == (4, 4)


def test_unfrozen_resnet38_trains_everything() -> None:
    net = ResNet38(freeze=False).train()
    assert net.bn7.training and all(p.requires_grad for p in net.parameters())


def test_every_parameter_has_an_mxnet_name() -> None:
    keys = [k for k in ResNet38().state_dict() if not k.endswith("num_batches_tracked")]
    assert len(keys) == len({mx_name(k) for k in keys})
    for key in keys:
        assert resnet38_name(mx_name(key)) == key
    assert resnet38_name("arg:linear1000_weight") is None
    with pytest.raises(KeyError):
        resnet38_name("arg:res9z_branch3_weight")


@pytest.mark.parametrize("version", ["v2", "v1", "legacy"])
def test_params_format_round_trip(tmp_path: Path, version: str) -> None:
    arrays = {
        "arg:a_weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "aux:b_moving_var": np.array([1.5, -2.0], dtype=np.float64),
        "arg:c": np.array([[1, 2]], dtype=np.float16),
        "arg:d": np.array([7, 8, 9], dtype=np.int32),
    }
    path = tmp_path / "small.params"
    write_params(path, arrays, version)
    loaded = read_params(path)
    assert list(loaded) == list(arrays)
    for name, arr in arrays.items():
        assert loaded[name].dtype == arr.dtype and np.array_equal(loaded[name], arr)


def test_corrupt_params_files_raise(tmp_path: Path) -> None:
    path = tmp_path / "w.params"
    write_params(path, {"arg:conv1a_weight": np.zeros((64, 3, 3, 3), np.float32)})
    data = path.read_bytes()
    cases = {
        "truncated": data[:-40],
        "trailing": data + b"\0",
        "magic": b"\x13" + data[1:],
    }
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.params"
        bad.write_bytes(blob)
        with pytest.raises(InputError, match=f"{name}.params"):
            read_params(bad)
    with pytest.raises(InputError, match="not found"):
        read_params(tmp_path / "missing.params")


def test_load_mxnet_params(tmp_path: Path, source_state: dict[str, torch.Tensor]) -> None:
    arrays = {mx_name(k): v.numpy() for k, v in source_state.items()}
    arrays["arg:linear1000_weight"] = np.zeros((3, 4096), np.float16)  # ImageNet classifier: dropped
    path = tmp_path / "ilsvrc-cls_rna-a1_cls1000_ep-0001.params"
    write_params(path, arrays)
    net = ResNet38()
    net.load_weights(path)
    state = net.state_dict()
    assert all(torch.equal(state[k], v.float()) for k, v in source_state.items())

    # a file of another network: one missing parameter, one of the wrong shape, one unknown name
    del arrays["aux:bn7_moving_var"]
    write_params(path, arrays)
    with pytest.raises(InputError, match=r"keys missing.*bn7.running_var"):
        ResNet38().load_weights(path)
    arrays["aux:bn7_moving_var"] = np.ones(4095, np.float16)
    write_params(path, arrays)
    with pytest.raises(InputError, match=r"'bn7.running_var' has shape \(4095,\)"):
        ResNet38().load_weights(path)
    write_params(path, {"arg:fc_weight": np.zeros(2, np.float32)})
    with pytest.raises(InputError, match="'arg:fc_weight' is not part of ResNet-38"):
        ResNet38().load_weights(path)


def test_load_converted_pth(tmp_path: Path, source_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "resnet38.pth"
    torch.save({**source_state, "fc8.weight": torch.zeros(21, 4096, 1, 1)}, path)  # SEAM-style extra head key
    net = ResNet38()
    net.load_weights(path)
    state = net.state_dict()
    assert all(torch.equal(state[k], v.float()) for k, v in source_state.items())

    path.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="resnet38.pth: cannot load weights"):
        ResNet38().load_weights(path)
    torch.save({"conv1a.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(InputError, match="keys missing"):
        ResNet38().load_weights(path)
