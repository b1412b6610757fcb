"""The shared training machinery: poly lr, the official SGD momentum quirk, resumable states and the loss curve."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from ppcseg.utils.optim import poly_lr, poly_param_groups, poly_sgd, set_lr
from ppcseg.utils.training import LossCurve, RunStates, input_fingerprints, same_run, weights_input


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.Conv2d(4, 2, 1))


def _optimizer(net: nn.Module, *, fix_momentum: bool = False) -> torch.optim.SGD:
    groups = poly_param_groups(net, [net[2]], 0.1, 5e-4)
    return poly_sgd(groups, 0.1, 5e-4, fix_momentum=fix_momentum)


def _step(net: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> float:
    lr = set_lr(optimizer, poly_lr(0.1, step, 4, 0.9))
    loss = net(torch.ones(1, 3, 5, 5)).square().mean()  # dropout draws from the global generator
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return lr


def test_poly_lr_falls_to_its_last_value_and_stays() -> None:
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)
    last = 0.01 * (1 / 100) ** 0.9
    assert [poly_lr(0.01, s, 100, 0.9) for s in (99, 100, 250)] == pytest.approx([last] * 3)
    optimizer = _optimizer(_net())
    assert set_lr(optimizer, 0.5) == 0.5
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5, 1.0, 5.0, 10.0])


def test_sgd_momentum_is_the_weight_decay_unless_fixed() -> None:
    net = _net()
    official, fixed = _optimizer(net), _optimizer(net, fix_momentum=True)
    assert {g["momentum"] for g in official.param_groups} == {5e-4}  # [quirk] the official argument order
    assert {g["momentum"] for g in fixed.param_groups} == {0.9}
    # the decay is the groups' own: weights decay, biases do not
    assert [g["weight_decay"] for g in official.param_groups] == [5e-4, 0.0, 5e-4, 0.0]


def test_a_resumed_run_continues_bit_identically(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cpu = torch.device("cpu")
    identity = {"seed": 0, "size": (5, 5), "inputs": {"images": "abc"}}
    net = _net()
    optimizer = _optimizer(net)
    curve = LossCurve(["step", "lr", "loss"])
    states = RunStates(tmp_path, identity, "test", cpu, keep_rng=True)
    for step in range(4):
        curve.append(step, _step(net, optimizer, step), [float(step) / 3])
        if step in (1, 2):
            states.save(step + 1, net, optimizer, curve.rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state_00000003.pt"]  # older states are dropped

    resumed_net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.Conv2d(4, 2, 1))
    resumed_opt = _optimizer(resumed_net)
    torch.manual_seed(123)  # the saved RNG state must replace whatever the generator holds now
    with caplog.at_level(logging.INFO, logger="ppcseg"):
        start, rows = RunStates(tmp_path, identity, "test", cpu, keep_rng=True).resume(resumed_net, resumed_opt, 4)
    assert "test: resuming from" in caplog.text and "at step 3 of 4" in caplog.text
    assert (start, rows) == (3, curve.rows[:3])
    resumed_curve = LossCurve(["step", "lr", "loss"], rows)
    resumed_curve.append(3, _step(resumed_net, resumed_opt, 3), [1.0])
    ref, out = net.state_dict(), resumed_net.state_dict()
    assert all(torch.equal(ref[k], out[k]) for k in ref)
    assert resumed_curve.rows == curve.rows

    resumed_curve.write(tmp_path / "loss.csv")
    assert (tmp_path / "loss.csv").read_text().splitlines() == [
        "step,lr,loss",
        "0,0.1,0",
        *curve.rows[1:],
    ]
    assert curve.rows[1] == f"1,{0.1 * 0.75**0.9:.8g},0.333333"


def test_foreign_or_unreadable_states_are_not_resumed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cpu = torch.device("cpu")
    net = _net()
    optimizer = _optimizer(net)
    RunStates(tmp_path, {"lr": 0.1}, "test", cpu, keep_rng=False).save(2, net, optimizer, ["0,0.1,1", "1,0.1,1"])
    (tmp_path / "state_00000005.pt").write_bytes(b"truncated")  # the newest, unreadable: skipped
    with caplog.at_level(logging.INFO, logger="ppcseg"):
        assert RunStates(tmp_path, {"lr": 0.1}, "test", cpu, keep_rng=False).resume(net, optimizer, 9)[0] == 2
        assert "skipping state state_00000005.pt" in caplog.text
        assert RunStates(tmp_path, {"lr": 0.2}, "test", cpu, keep_rng=False).resume(net, optimizer, 9) == (0, [])
        assert "other settings or inputs" in caplog.text
    assert RunStates(tmp_path / "none", {}, "test", cpu, keep_rng=False).resume(net, optimizer, 9) == (0, [])


def test_input_fingerprints_follow_the_files(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"1")
    first = input_fingerprints(weights=weights_input(weights), saliency=None)
    assert first["saliency"] is None and same_run(
        first, input_fingerprints(weights=weights_input(weights), saliency=None)
    )
    weights.write_bytes(b"22")  # new contents under the same path
    assert not same_run(first, input_fingerprints(weights=weights_input(weights), saliency=None))
    assert same_run({"a": (1, 2)}, {"a": [1, 2]}) and not same_run({"a": 1}, {"a": 1, "b": None})


def _curve_steps(path: Path) -> tuple[list[int], float]:
    """The step column of a loss CSV and its first row's lr."""
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return [int(row[0]) for row in rows], float(rows[0][1])


def test_train_cam_and_train_affinity_number_their_loss_rows_alike(tmp_path: Path) -> None:
    """LossCurve's convention in both training stages: row k is the batch of update k (1-based) at that update's lr,
    and the state saved after update k holds rows 1 to k. train-cam once logged 0-based rows, one off train-affinity."""
    from ppcseg.cam.train import train as train_cam
    from ppcseg.data.voc import load_mask, read_ids, save_mask, voc_dirs
    from ppcseg.refine import train_affinity
    from ppcseg.utils.checkpoint import load_checkpoint
    from tests.stages import args, default_params, tiny_cam_params
    from tests.tinyvoc import make_voc

    voc = make_voc(tmp_path / "VOC2012", size=48, train=3, val=1, extra=1)
    labels = tmp_path / "labels"
    for image_id in read_ids(voc, "train_aug"):
        gt = load_mask(voc_dirs(voc)["masks_aug"] / f"{image_id}.png")
        for kind in ("la", "ha"):
            save_mask(labels / kind / f"{image_id}.png", gt)
    cam = tiny_cam_params(max_steps=4, checkpoint_every=3, batch_size=2, lr=0.05)
    train_cam(voc, cam, 0, out=tmp_path / "cam.pt", loss_csv=tmp_path / "cam.csv", state_dir=tmp_path / "cam_state")
    affinity = {"crop_size": 40, "radius": 2, "batch_size": 2, "epochs": 2, "lr": 0.05}
    params = default_params(cam={"backbone": "tiny"}, affinity={**affinity, "num_workers": 0, "checkpoint_every": 3})
    paths = dict(
        out=str(tmp_path / "aff.pt"), out_loss=str(tmp_path / "aff.csv"), state_dir=str(tmp_path / "aff_state")
    )
    train_affinity.run(args(data=str(voc), labels=str(labels), weights=None, **paths), params)

    for name in ("cam", "aff"):
        steps, first_lr = _curve_steps(tmp_path / f"{name}.csv")
        assert steps == [1, 2, 3, 4] and first_lr == pytest.approx(0.05), name
    # the newest state of each: after update 3 (affinity saves no final state), after update 4 (train-cam's last)
    for state_dir, done in ((tmp_path / "aff_state", 3), (tmp_path / "cam_state", 4)):
        (path,) = state_dir.iterdir()
        state = load_checkpoint(path)
        steps = [int(row.split(",")[0]) for row in state["loss_rows"]]
        assert state["step"] == done and steps == list(range(1, done + 1))
