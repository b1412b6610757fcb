"""Real training through mmengine's Runner on a tiny VOC folder: CLI, determinism, resume after a crash, and export
of palette PNGs (eval-seg: test_eval.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from PIL import Image

from ppcseg.cli import main
from ppcseg.config import load_params
from ppcseg.data.voc import read_ids, save_mask
from ppcseg.segment.train import build_train_config, train
from ppcseg.utils.checkpoint import load_checkpoint
from ppcseg.utils.errors import InputError
from tests.segment.helpers import ITERS, params_args, train_cli
from tests.timing import HANG_GUARD_S


class Crash(RuntimeError):
    pass


@HOOKS.register_module(force=True)
class CrashAfterIter(Hook):
    priority = "LOWEST"  # after the CheckpointHook has saved this iteration

    def __init__(self, at: int) -> None:
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.at:  # runner.iter is still the 0-based index of the finished iteration
            raise Crash(f"simulated kill after iteration {self.at}")


TRAINED_ITERS: list[int] = []


@HOOKS.register_module(force=True)
class RecordIters(Hook):
    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        TRAINED_ITERS.append(runner.iter)


def test_train_cli_writes_a_weights_only_checkpoint(trained):
    ckpt = load_checkpoint(trained, expect={"kind": "mmseg-segmentor"})
    assert ckpt["meta"]["iter"] == ITERS
    assert ckpt["meta"]["config_name"] == "deeplabv1-largefov_tiny_1xb4-500_voc12pseudo-96x96.py"
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values())
    assert ckpt["meta"]["model"]["data_preprocessor"]["size"] == [48, 48]


def test_training_is_deterministic_on_cpu(voc_root, params_files, trained, tmp_path):
    assert train_cli(voc_root, params_files, tmp_path / "work", tmp_path / "again.pt") == 0
    first = load_checkpoint(trained)["state_dict"]
    second = load_checkpoint(tmp_path / "again.pt")["state_dict"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_resume_after_a_crash_continues_from_the_last_checkpoint(voc_root, params_files, trained, tmp_path):
    params = load_params(params_files)
    seg = params["segmentation"]
    work, out = tmp_path / "work", tmp_path / "seg.pt"

    def config(extra_hooks: list[dict]):
        cfg = build_train_config(seg, 0, data=voc_root, masks=voc_root / "SegmentationClassAug", work_dir=work)
        cfg.default_hooks.checkpoint.interval = 2
        cfg.custom_hooks = [*cfg.custom_hooks, dict(type="RecordIters"), *extra_hooks]
        return cfg

    TRAINED_ITERS.clear()
    with pytest.raises(Crash):
        train(config([dict(type="CrashAfterIter", at=2)]), out, seg["config"])
    assert TRAINED_ITERS == [0, 1] and not out.exists()
    assert (work / "iter_2.pth").is_file()

    TRAINED_ITERS.clear()
    train(config([]), out, seg["config"])
    assert TRAINED_ITERS == [2, 3]  # iterations 0 and 1 were not redone
    assert load_checkpoint(out)["meta"]["iter"] == ITERS
    resumed, uninterrupted = load_checkpoint(out)["state_dict"], load_checkpoint(trained)["state_dict"]
    assert [k for k in uninterrupted if not torch.equal(resumed[k], uninterrupted[k])] == []


def test_export_cli_writes_palette_pngs_and_resumes(voc_root, params_files, trained, tmp_path, monkeypatch):
    from ppcseg import per_image
    from tests.stages import Interrupted, keep_only

    out = tmp_path / "pred"
    ids = read_ids(voc_root, "val")
    args = ["export-predictions", *params_args(params_files), "--data", str(voc_root), "--checkpoint", str(trained)]
    args += ["--split", "val", "--out", str(out), "--protocol", "single"]
    with monkeypatch.context() as patch:  # killed before the rename
        patch.setattr(per_image, "finish_partial", lambda *_, **__: (_ for _ in ()).throw(Interrupted()))
        with pytest.raises(Interrupted):
            main(args)
    keep_only(tmp_path / "pred.partial", [f"{ids[0]}.png"])
    done_before_kill = np.full((3, 3), 7, np.uint8)  # a marker: a resumed run must keep finished images
    save_mask(tmp_path / "pred.partial" / f"{ids[0]}.png", done_before_kill)
    assert main(args) == 0
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(ids)
    assert not (tmp_path / "pred.partial").exists()
    assert np.array_equal(np.asarray(Image.open(out / f"{ids[0]}.png")), done_before_kill)
    for image_id in ids[1:]:
        with Image.open(out / f"{image_id}.png") as mask, Image.open(voc_root / "JPEGImages" / f"{image_id}.jpg") as im:
            assert mask.mode == "P" and mask.size == im.size
            assert np.asarray(mask).max() <= 20


def test_missing_pseudo_mask_is_named(voc_root, params_files, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    for image_id in read_ids(voc_root, "train_aug")[1:]:
        (masks / f"{image_id}.png").write_bytes((voc_root / "SegmentationClassAug" / f"{image_id}.png").read_bytes())
    missing = read_ids(voc_root, "train_aug")[0]
    args = [*params_args(params_files), "--data", str(voc_root), "--masks", str(masks)]
    code = main(["train-seg", *args, "--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "o.pt")])
    assert code == 2
    assert not (tmp_path / "o.pt").exists()
    assert f"{masks / missing}.png: listed in split 'train_aug' but missing" in capsys.readouterr().err


def test_global_batch_is_split_over_processes(voc_root, params_files, tmp_path):
    seg = {**load_params(params_files)["segmentation"], "batch_size": 10}
    paths = dict(data=voc_root, masks=voc_root / "SegmentationClassAug", work_dir=tmp_path)
    cfg = build_train_config(seg, 0, processes=2, **paths)
    assert cfg.train_dataloader.batch_size == 5 and cfg.launcher == "pytorch"  # mmengine wraps the model in DDP
    one = build_train_config(seg, 0, **paths)
    assert one.train_dataloader.batch_size == 10 and one.launcher == "none"
    with pytest.raises(InputError, match="segmentation.batch_size"):
        build_train_config(seg, 0, processes=4, **paths)


def test_params_override_the_config(voc_root, params_files, tmp_path):
    seg = load_params(params_files)["segmentation"]
    weights = tmp_path / "tiny.pth"
    weights.write_bytes(b"")
    cfg = build_train_config(
        seg, 7, data=voc_root, masks=voc_root / "SegmentationClassAug", work_dir=tmp_path, weights=weights
    )
    assert cfg.train_cfg.max_iters == ITERS and cfg.param_scheduler[0].end == ITERS
    assert cfg.optim_wrapper.optimizer.lr == 0.01 and cfg.randomness.seed == 7
    assert cfg.model.data_preprocessor.size == (48, 48)
    crop = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == "RandomCrop"][0]
    assert tuple(crop.crop_size) == (48, 48)
    assert cfg.model.backbone.weights == str(weights)  # project backbones load --weights themselves
    assert cfg.val_dataloader.dataset.split == "val" and cfg.val_dataloader.dataset.mask_dir == "SegmentationClass"


def test_mmseg_backbones_get_a_local_pretrained_init(voc_root, params_files, tmp_path):
    seg = {**load_params(params_files)["segmentation"], "config": "deeplabv2_r101_1xb10-20k_voc12pseudo-448x448.py"}
    with pytest.raises(InputError, match=r"segmentation.backbone: 'tiny', but deeplabv2_r101.* builds a resnet101"):
        build_train_config(seg, 0, data=voc_root, masks=voc_root / "SegmentationClassAug", work_dir=tmp_path)
    seg["backbone"] = "resnet101"
    weights = tmp_path / "resnet101.pth"
    weights.write_bytes(b"")
    cfg = build_train_config(
        seg, 0, data=voc_root, masks=voc_root / "SegmentationClassAug", work_dir=tmp_path, weights=weights
    )
    assert cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint=str(weights))
    assert "pretrained" not in cfg.model or cfg.model.pretrained is None  # nothing is downloaded


def test_checkpoints_of_other_settings_are_not_resumed(tmp_path):
    from ppcseg.segment.train import reset_if_stale

    (tmp_path / "iter_2.pth").write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))
    reset_if_stale(tmp_path, {"lr": 0.01})
    reset_if_stale(tmp_path, {"lr": 0.01})  # same settings: a resume keeps them
    assert (tmp_path / "iter_2.pth").exists() and (tmp_path / "last_checkpoint").exists()
    reset_if_stale(tmp_path, {"lr": 0.02})
    assert not (tmp_path / "iter_2.pth").exists() and not (tmp_path / "last_checkpoint").exists()


def test_two_cpu_processes_through_torchrun(voc_root, params_files, tmp_path):
    """torchrun with 2 processes on CPU (gloo), no launcher flag: half the global batch each, one checkpoint."""
    import subprocess
    import sys

    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        *("-m", "ppcseg", "train-seg", *params_args(params_files), "--threads", "1"),
        *("--data", str(voc_root), "--masks", str(voc_root / "SegmentationClassAug")),
        *("--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "seg.pt"), "--log-file", str(tmp_path / "log")),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert load_checkpoint(tmp_path / "seg.pt")["meta"]["iter"] == ITERS
    log = (tmp_path / "log").read_text()
    # mmengine logs the world size as "GPU number", also for CPU processes.
    assert "Distributed training: True" in log and "GPU number: 2" in log


def test_new_pseudo_masks_in_the_same_folder_train_afresh(voc_root, params_files, trained, tmp_path):
    """After an upstream change, Snakemake/DVC re-run train-seg on new masks at the same path: it must not resume the
    finished run of the old masks (which would silently return the old model)."""
    import shutil

    masks = tmp_path / "masks"
    shutil.copytree(voc_root / "SegmentationClassAug", masks)
    work = tmp_path / "work"
    args = [*params_args(params_files), "--data", str(voc_root), "--masks", str(masks), "--work-dir", str(work)]
    assert main(["train-seg", *args, "--out", str(tmp_path / "old.pt")]) == 0
    first_id = read_ids(voc_root, "train_aug")[0]
    save_mask(masks / f"{first_id}.png", np.zeros_like(np.array(Image.open(masks / f"{first_id}.png"))))
    assert main(["train-seg", *args, "--out", str(tmp_path / "new.pt")]) == 0
    old, new = load_checkpoint(tmp_path / "old.pt")["state_dict"], load_checkpoint(tmp_path / "new.pt")["state_dict"]
    assert any(not torch.equal(old[k], new[k]) for k in old)
    assert load_checkpoint(tmp_path / "new.pt")["meta"]["iter"] == ITERS


def test_a_moved_project_resumes(voc_root, params_files, trained, tmp_path, monkeypatch):
    """Killed after iteration 2, then the project folder moved: the same command, run in the new place, continues
    from iteration 2 (train-seg once fingerprinted absolute paths, and mmengine's last_checkpoint holds one)."""
    import shutil

    from ppcseg.segment import train as train_seg

    hooks = [dict(type="RecordIters"), dict(type="CrashAfterIter", at=2)]
    build = train_seg.build_train_config

    def with_hooks(*args, **kwargs):
        cfg = build(*args, **kwargs)
        cfg.default_hooks.checkpoint.interval = 2
        cfg.custom_hooks = [*cfg.custom_hooks, *hooks]
        return cfg

    monkeypatch.setattr(train_seg, "build_train_config", with_hooks)
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(voc_root, old / "data" / "VOC2012")  # copy2: the files keep their mtimes
    data = "data/VOC2012"
    args = ["train-seg", *params_args(params_files), "--data", data, "--masks", f"{data}/SegmentationClassAug"]
    args += ["--work-dir", "work", "--out", "seg.pt"]
    monkeypatch.chdir(old)
    TRAINED_ITERS.clear()
    with pytest.raises(Crash):
        main(args)
    assert TRAINED_ITERS == [0, 1] and (old / "work" / "iter_2.pth").is_file()

    shutil.move(old, new)
    monkeypatch.chdir(new)
    hooks.pop()  # no kill this time
    TRAINED_ITERS.clear()
    assert main(args) == 0
    assert TRAINED_ITERS == [2, 3]  # resumed, not started over
    resumed, uninterrupted = load_checkpoint(new / "seg.pt")["state_dict"], load_checkpoint(trained)["state_dict"]
    assert [k for k in uninterrupted if not torch.equal(resumed[k], uninterrupted[k])] == []
