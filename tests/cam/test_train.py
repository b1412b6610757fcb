"""train-cam: the loss falls, a killed run resumes bit-identically, and 2 processes equal 1 on the same batch."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from PIL import Image

from ppcseg.cam.dataset import CamTrainSet
from ppcseg.cam.train import (
    compute_losses,
    global_batch_keys,
    loss_columns,
    make_optimizer,
    set_poly_lr,
    train,
    view2_size,
)
from ppcseg.config import REPO_ROOT, load_params
from ppcseg.data.voc import read_ids
from ppcseg.models.cam_net import build_cam_net, load_cam_net
from ppcseg.utils.distributed import DistInfo, average_gradients, local_slice, mean_over_ranks
from ppcseg.utils.errors import InputError
from tests.stages import tiny_cam_params
from tests.timing import HANG_GUARD_S
from tests.tinyvoc import make_voc

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 16 train_aug images of 1-2 of 3 classes, wider than high (resize_long must act on the long side)
    return make_voc(
        tmp_path_factory.mktemp("voc"), size=64, train=8, val=1, extra=8, classes=[1, 2, 3], shapes=[(64, 72)]
    )


def run_train(voc: Path, out: Path, cam: dict, **kwargs) -> None:
    train(
        voc,
        cam,
        0,
        out=out / "cam.pt",
        loss_csv=out / "loss.csv",
        state_dir=out / "state",
        saliency_dir=voc / "SaliencyMaps",
        **kwargs,
    )


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


def test_loss_falls(voc: Path, tmp_path: Path) -> None:
    cam = tiny_cam_params(max_steps=30)
    run_train(voc, tmp_path, cam)
    header, rows = read_csv(tmp_path / "loss.csv")
    assert header == ["step", "lr", "total", *loss_columns(cam)]
    assert rows[:, 0].tolist() == list(range(1, 31))  # update numbers (LossCurve)
    assert rows[0, 1] == pytest.approx(0.05) and rows[-1, 1] == pytest.approx(0.05 * (1 / 30) ** 0.9)
    total, cls = rows[:, 2], rows[:, header.index("cls")]
    # 30 SGD steps from random init: a clear but modest fall (about 18 % total, 11 % classification here).
    assert total[-5:].mean() < 0.95 * total[:5].mean() and cls[-5:].mean() < 0.97 * cls[:5].mean()
    assert np.allclose(total, rows[:, 3:7].sum(axis=1) + rows[:, header.index("ppc")], rtol=1e-4)
    net = load_cam_net(tmp_path / "cam.pt")
    assert net.meta["method"] == "seam" and net.meta["backbone"] == "tiny" and net.meta["num_classes"] == 21
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["state_00000030.pt"]


@pytest.mark.parametrize("method,ppc", [("eps", True), ("eps", False), ("seam", False)])
def test_other_objectives_run(voc: Path, tmp_path: Path, method: str, ppc: bool) -> None:
    cam = tiny_cam_params(method=method, ppc=ppc, max_steps=3)
    run_train(voc, tmp_path, cam)
    header, rows = read_csv(tmp_path / "loss.csv")
    assert header[3:] == loss_columns(cam) and np.isfinite(rows).all() and len(rows) == 3
    assert ("sal" in header) == (method == "eps") and ("intra" in header) == ppc
    assert load_cam_net(tmp_path / "cam.pt").background_channel == (20 if method == "eps" else 0)


def test_poly_schedule_can_be_shorter_than_training() -> None:
    """The official EPS + PPC run: poly over 19 830 steps, 20 000 steps trained, the lr frozen at its last value."""
    net = build_cam_net(tiny_cam_params(), None)
    default = tiny_cam_params(lr=0.01)
    optimizer = make_optimizer(net, default)
    assert set_poly_lr(optimizer, default, 0, 20_000) == pytest.approx(0.01)
    assert set_poly_lr(optimizer, default, 19_999, 20_000) == pytest.approx(0.01 * (1 / 20_000) ** 0.9)
    eps = tiny_cam_params(lr=0.01, poly_steps=19_830)
    last = 0.01 * (1 / 19_830) ** 0.9
    assert set_poly_lr(optimizer, eps, 9_915, 20_000) == pytest.approx(0.01 * 0.5**0.9)
    assert [set_poly_lr(optimizer, eps, s, 20_000) for s in (19_829, 19_830, 19_999)] == pytest.approx([last] * 3)
    assert [g["lr"] / g["lr_mult"] for g in optimizer.param_groups] == pytest.approx(
        [last] * len(optimizer.param_groups)
    )


def test_view2_is_a_fixed_size_or_a_scale_of_view1(voc: Path, tmp_path: Path) -> None:
    assert view2_size(tiny_cam_params(view2_size=128), (448, 448)) == (128, 128)
    assert view2_size(tiny_cam_params(view2_scale=0.3), (448, 448)) == (134, 134)  # the original SEAM's view 2
    seam = tiny_cam_params(ppc=False, view2_scale=0.3, max_steps=2)
    run_train(voc, tmp_path, seam)
    assert np.isfinite(read_csv(tmp_path / "loss.csv")[1]).all()
    with pytest.raises(InputError, match="cam.view2_scale"):
        run_train(voc, tmp_path / "ppc", tiny_cam_params(view2_scale=0.3))


def test_bad_setups(voc: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--saliency"):
        train(
            voc,
            tiny_cam_params(method="eps"),
            0,
            out=tmp_path / "c.pt",
            loss_csv=tmp_path / "l.csv",
            state_dir=tmp_path / "s",
        )
    with pytest.raises(InputError, match="--weights"):
        run_train(voc, tmp_path, tiny_cam_params(pretrained=True))
    with pytest.raises(InputError, match="cam.batch_size: 32 exceeds"):
        run_train(voc, tmp_path, tiny_cam_params(batch_size=32))
    with pytest.raises(InputError, match="cam.batch_size: 5 is not divisible by the 2 processes"):
        local_slice(5, DistInfo(0, 2, 0, torch.device("cpu")))


def test_schedule_and_augmentation_are_pure_functions(voc: Path) -> None:
    keys = [global_batch_keys(s, 16, 4, 0) for s in range(8)]  # 4 steps per epoch, epoch 0 and 1
    assert sorted(i for k in keys[:4] for _, i in k) == list(range(16)) and keys[4][0][0] == 1
    assert keys == [global_batch_keys(s, 16, 4, 0) for s in range(8)] and keys[0] != global_batch_keys(0, 16, 4, 1)
    cam = tiny_cam_params(method="eps")
    data = CamTrainSet(voc, read_ids(voc, "train_aug"), cam, 0, voc / "SaliencyMaps")
    a, b, other = data[(1, 3)], data[(1, 3)], data[(2, 3)]
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["image"], other["image"])
    assert a["image"].shape == (3, 48, 48) and a["saliency"].shape == (1, 48, 48)
    assert a["labels"][20] == 1 and a["saliency"].max() <= 1  # EPS layout: background last


def test_resume_after_stop_is_bit_identical(voc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cam = tiny_cam_params(max_steps=10, checkpoint_every=4)
    run_train(voc, tmp_path / "ref", cam)
    run_train(voc, tmp_path / "cut", cam, stop_after=6)  # state at step 4, csv rows up to step 5
    assert not (tmp_path / "cut" / "cam.pt").exists()
    with caplog.at_level(logging.INFO, logger="ppcseg"):
        run_train(voc, tmp_path / "cut", cam | {"num_workers": 1})  # worker count must not matter
    assert "at step 4 of 10" in caplog.text  # resumed, did not start over
    ref = torch.load(tmp_path / "ref" / "cam.pt", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / "cam.pt", weights_only=True)["model"]
    assert all(torch.equal(ref[k], cut[k]) for k in ref)
    assert (tmp_path / "ref" / "loss.csv").read_text() == (tmp_path / "cut" / "loss.csv").read_text()


def test_sigkill_and_restart_is_bit_identical(voc: Path, tmp_path: Path) -> None:
    overlay = {"cam": tiny_cam_params(max_steps=30, checkpoint_every=5)}
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    cam = load_params([REPO_ROOT / "params.yaml", tmp_path / "overlay.yaml"])["cam"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same thread count as the killed run: float sums must happen in the same order
    try:
        run_train(voc, tmp_path / "ref", cam)
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "ppcseg",
        "train-cam",
        "--params",
        str(REPO_ROOT / "params.yaml"),
        "--params",
        str(tmp_path / "overlay.yaml"),
        "--data",
        str(voc),
        "--out",
        str(out / "cam.pt"),
        "--out-loss",
        str(out / "loss.csv"),
        "--state-dir",
        str(out / "state"),
        "--saliency",
        str(voc / "SaliencyMaps"),
        "--threads",
        "1",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + HANG_GUARD_S
    while not (out / "state").is_dir() or not any((out / "state").glob("state_*.pt")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "cam.pt").exists(), "the run finished before it could be killed"
    killed_at = int(next((out / "state").glob("state_*.pt")).stem.split("_")[1])
    restart = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert restart.returncode == 0, restart.stderr
    assert f"at step {killed_at} of 30" in restart.stderr  # it resumed rather than starting over
    ref = torch.load(tmp_path / "ref" / "cam.pt", weights_only=True)["model"]
    resumed = torch.load(out / "cam.pt", weights_only=True)["model"]
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    assert (tmp_path / "ref" / "loss.csv").read_text() == (out / "loss.csv").read_text()


# ------------------------------------------------------------------------------------------ two processes (gloo)

BATCH = 4


def _step(cam: dict, images: torch.Tensor, labels: torch.Tensor, saliency: torch.Tensor) -> tuple[dict, dict]:
    """One loss + gradient evaluation; dropout off (eval) so that both runs see the same network function."""
    torch.manual_seed(0)
    net = build_cam_net(cam, None).eval()
    params = [p for g in net.param_groups(0.1, 0.0) for p in g["params"]]
    losses = compute_losses(net, images, labels, cam, saliency=saliency, generator=torch.Generator().manual_seed(3))
    losses["total"].backward()
    average_gradients(params)
    logged = mean_over_ranks({k: float(v.detach()) for k, v in losses.items()}, torch.device("cpu"))
    return logged, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _worker(rank: int, world: int, init_file: str, cam: dict, batch: tuple, result: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    mine = local_slice(BATCH, DistInfo(rank, world, rank, torch.device("cpu")))
    logged, grads = _step(cam, *(t[mine] for t in batch))
    if rank == 0:
        torch.save({"logged": logged, "grads": grads}, result)
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["seam", "eps"])
def test_two_processes_equal_one(tmp_path: Path, method: str) -> None:
    cam = tiny_cam_params(method=method, ppc=True)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 3, 48, 48, generator=gen)
    labels = torch.zeros(BATCH, 21)
    labels[:, 0] = 1
    labels[[0, 1, 2, 3, 3], [3, 5, 3, 7, 12]] = 1
    if method == "eps":
        labels = labels.roll(-1, dims=1)
    saliency = torch.rand(BATCH, 1, 48, 48, generator=gen).round()
    single_logged, single_grads = _step(cam, images, labels, saliency)

    result = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), cam, (images, labels, saliency), str(result)), nprocs=2)
    multi = torch.load(result, weights_only=True)
    assert multi["logged"].keys() == single_logged.keys()
    for key, value in single_logged.items():
        assert multi["logged"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert multi["grads"].keys() == single_grads.keys()
    for name, grad in single_grads.items():
        assert torch.allclose(multi["grads"][name], grad, rtol=1e-4, atol=1e-6), name


def test_foreign_or_corrupt_states_are_not_resumed(voc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cam = tiny_cam_params(max_steps=4, checkpoint_every=2)
    run_train(voc, tmp_path, cam, stop_after=2)
    (tmp_path / "state" / "state_00000003.pt").write_bytes(b"truncated")  # newest, unreadable: skipped
    with caplog.at_level(logging.INFO, logger="ppcseg"):
        run_train(voc, tmp_path, cam | {"lr": 0.01})  # the step-2 state belongs to another lr
    assert "skipping state state_00000003.pt" in caplog.text and "other settings" in caplog.text
    assert "resuming" not in caplog.text
    _, rows = read_csv(tmp_path / "loss.csv")
    assert rows[:, 0].tolist() == [1, 2, 3, 4] and rows[0, 1] == pytest.approx(0.01)


def test_new_images_in_the_same_folder_train_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A finished run is not "resumed" when the data changed under the same paths (after an upstream re-run)."""
    voc = make_voc(tmp_path / "voc", size=64, train=4, val=1, extra=4, classes=[1, 2, 3])
    cam = tiny_cam_params(max_steps=4, checkpoint_every=2)
    run_train(voc, tmp_path / "run", cam)
    first = torch.load(tmp_path / "run" / "cam.pt", weights_only=True)["model"]
    image = next(iter(sorted((voc / "JPEGImages").iterdir())))
    flipped = np.ascontiguousarray(np.asarray(Image.open(image))[:, ::-1])
    Image.fromarray(flipped).save(image, quality=95)
    with caplog.at_level(logging.INFO, logger="ppcseg"):
        run_train(voc, tmp_path / "run", cam)
    assert "resuming" not in caplog.text and "other settings" in caplog.text
    second = torch.load(tmp_path / "run" / "cam.pt", weights_only=True)["model"]
    assert any(not torch.equal(first[k], second[k]) for k in first)
