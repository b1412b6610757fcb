"""Workflow integrity: a finished output is complete, current and made with the current settings.

Unit-level checks call the stages directly on a tiny generated VOC folder; the workflow-level ones dry-run Snakemake
in a scratch copy of the repository (no stage runs).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ppcseg.cam import infer
from ppcseg.cam.train import train
from ppcseg.data.cams import load_cams
from ppcseg.data.voc import load_mask, read_ids, save_mask
from ppcseg.refine import affinity_labels, crf_masks
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import atomic_dir, atomic_path, write_json
from ppcseg.utils.shards import LISTING
from tests.stages import StubCamNet, args, default_params, interrupted_run, keep_only, tiny_cam_params
from tests.timing import HANG_GUARD_S
from tests.tinyvoc import make_voc, oracle_cams
from tests.workflow.helpers import DEMO, planned_rules, snakemake

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_voc(tmp_path_factory.mktemp("voc") / "VOC2012", size=40, train=3, val=1, extra=2)
    oracle_cams(root, root.parent / "cams", noise=0.1)
    return root


def hidden_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# -------------------------------------------------------------------- 1. stale per-image work after a change


def _infer(voc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flip: bool, out: Path):
    monkeypatch.setattr(infer, "_load_net", lambda path: StubCamNet())
    (tmp_path / "cam.pt").write_bytes(b"checkpoint")
    params = default_params(infer_cam={"splits": ["train_aug"], "scales": [1.0], "flip": flip})
    return args(data=str(voc), checkpoint=str(tmp_path / "cam.pt"), out=str(out)), params


def test_infer_cam_discards_a_partial_folder_made_with_other_settings(voc, tmp_path, monkeypatch, caplog):
    """Case 1: kill infer_cam, change infer_cam.flip, run again: every CAM is made with the new setting."""
    run_args, with_flip = _infer(voc, tmp_path, monkeypatch, True, tmp_path / "cams")
    partial = interrupted_run(monkeypatch, infer, run_args, with_flip)
    ids = read_ids(voc, "train_aug")
    keep_only(partial, [f"{i}.npz" for i in ids[:3]])  # killed after 3 images
    _, without_flip = _infer(voc, tmp_path, monkeypatch, False, tmp_path / "cams")
    with caplog.at_level(logging.WARNING, logger="ppcseg"):
        infer.run(run_args, without_flip)
    assert "made with other settings or inputs" in caplog.text
    ref_args, _ = _infer(voc, tmp_path, monkeypatch, False, tmp_path / "ref")
    infer.run(ref_args, without_flip)
    for image_id in ids:
        np.testing.assert_array_equal(
            load_cams(tmp_path / "cams", image_id)[1], load_cams(tmp_path / "ref", image_id)[1]
        )


def test_infer_cam_discards_a_partial_folder_of_another_checkpoint(voc, tmp_path, monkeypatch, caplog):
    run_args, params = _infer(voc, tmp_path, monkeypatch, True, tmp_path / "cams")
    partial = interrupted_run(monkeypatch, infer, run_args, params)
    (tmp_path / "cam.pt").write_bytes(b"a retrained checkpoint")  # same path, new contents
    with caplog.at_level(logging.WARNING, logger="ppcseg"):
        interrupted_run(monkeypatch, infer, run_args, params)
    assert "made with other settings or inputs" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ppcseg"):
        infer.run(run_args, params)  # same settings and inputs as the interrupted run: resumed
    assert "other settings" not in caplog.text and not partial.exists()


@pytest.mark.parametrize(
    ("module", "section", "change"),
    [(crf_masks, "crf_masks", {"alpha": 2.0}), (affinity_labels, "affinity", {"low_alpha": 2.0})],
)
def test_crf_stages_discard_a_partial_folder_made_with_other_settings(
    voc, tmp_path, monkeypatch, module, section, change
):
    out = tmp_path / "out"
    run_args = args(data=str(voc), cams=str(voc.parent / "cams"), out=str(out))
    partial = interrupted_run(monkeypatch, module, run_args, default_params())
    sentinel = np.full((40, 40), 19, dtype=np.uint8)
    for path in partial.rglob("*.png"):
        save_mask(path, sentinel)  # marks the work of the old settings
    module.run(run_args, default_params(**{section: change}))
    for path in out.rglob("*.png"):
        assert not (load_mask(path) == 19).all(), f"{path} was made with the old settings"


# -------------------------------------------------------------------- 2. complete before the rename


def test_a_partial_folder_deleted_while_the_stage_runs_fails_the_stage(voc, tmp_path, monkeypatch):
    """Case 2: delete <out>.partial mid-run: the stage fails, and nothing is renamed into place."""
    out = tmp_path / "crf"
    run_args = args(data=str(voc), cams=str(voc.parent / "cams"), out=str(out))
    work, calls = crf_masks.STAGE.work, []

    def work_then_delete(image_id: str, *context) -> None:
        work(image_id, *context)
        calls.append(image_id)
        if len(calls) == 2:
            shutil.rmtree(out.with_name("crf.partial"))

    monkeypatch.setattr(crf_masks, "STAGE", replace(crf_masks.STAGE, work=work_then_delete))
    with pytest.raises(InputError, match=r"crf\.partial: changed by something else while the stage ran"):
        crf_masks.run(run_args, default_params())
    assert not out.exists()


def test_an_output_missing_at_the_end_fails_the_stage(voc, tmp_path, monkeypatch):
    out = tmp_path / "crf"
    run_args = args(data=str(voc), cams=str(voc.parent / "cams"), out=str(out))
    stage, ids = crf_masks.STAGE, read_ids(voc, "train_aug")

    def work_then_lose_one(image_id: str, *context) -> None:
        stage.work(image_id, *context)
        if image_id == ids[-1]:
            (out.with_name("crf.partial") / f"{ids[0]}.png").unlink()

    monkeypatch.setattr(crf_masks, "STAGE", replace(stage, work=work_then_lose_one))
    with pytest.raises(InputError, match=rf"1 of {len(ids)} output file\(s\) missing after the run, e.g. \['{ids[0]}"):
        crf_masks.run(run_args, default_params())
    assert not out.exists()
    monkeypatch.setattr(crf_masks, "STAGE", stage)
    crf_masks.run(run_args, default_params())  # the same command finishes it
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(ids)


# -------------------------------------------------------------------- 3. no temporaries in a finished output


def test_temporaries_of_a_killed_write_do_not_reach_the_finished_output(voc, tmp_path, monkeypatch):
    """Case 3: a SIGKILL inside an atomic write leaves `.<id>.<random>.tmp.png`; the finished folder has none."""
    out = tmp_path / "labels"
    run_args = args(data=str(voc), cams=str(voc.parent / "cams"), out=str(out))
    partial = interrupted_run(monkeypatch, affinity_labels, run_args, default_params())
    ids = read_ids(voc, "train_aug")
    keep_only(partial, [f"la/{ids[0]}.png", f"ha/{ids[0]}.png"])
    for sub in ("la", "ha"):
        with pytest.raises(KeyboardInterrupt), atomic_path(partial / sub / f"{ids[1]}.png") as tmp:
            leftover = tmp.with_name(tmp.name + "-kept")
            shutil.copy(tmp, leftover)  # a kill skips the clean-up: keep the temporary under its own name
            raise KeyboardInterrupt
        leftover.rename(tmp)
    assert len(hidden_files(partial)) == 3  # the two temporaries and the fingerprint
    affinity_labels.run(run_args, default_params())
    assert hidden_files(out) == [LISTING]  # no temporary, only the folder's listing
    assert sorted(p.name for p in out.rglob("*")) == sorted(["la", "ha", LISTING] + [f"{i}.png" for i in ids] * 2)


# -------------------------------------------------------------------- 4. the loss curve of a resumed training


def test_the_loss_csv_covers_the_whole_run_after_snakemake_deleted_it(tmp_path):
    """Case 4b: Snakemake deletes an interrupted job's outputs; the resumed run still writes every step's row."""
    voc = make_voc(tmp_path / "voc", size=64, train=4, val=1, extra=4, classes=[1, 2, 3])
    cam = tiny_cam_params(max_steps=6, checkpoint_every=2)

    def run(out: Path, **kwargs) -> None:
        train(voc, cam, 0, out=out / "cam.pt", loss_csv=out / "loss.csv", state_dir=out / "state", **kwargs)

    run(tmp_path / "ref")
    run(tmp_path / "cut", stop_after=3)  # state at step 2
    (tmp_path / "cut" / "loss.csv").unlink()  # --rerun-incomplete removes it before the job starts again
    run(tmp_path / "cut")
    assert (tmp_path / "cut" / "loss.csv").read_text() == (tmp_path / "ref" / "loss.csv").read_text()
    assert len((tmp_path / "ref" / "loss.csv").read_text().splitlines()) == 1 + 6


# -------------------------------------------------------------------- outputs readable as the umask says


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_atomic_outputs_get_the_modes_of_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "metrics.json", {"mIoU": 1.0})
        with atomic_path(tmp_path / "cam.pt") as tmp:
            torch.save({"x": 1}, tmp)
        with atomic_dir(tmp_path / "cams") as tmp:
            (tmp / "a.txt").write_text("a")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "cam.pt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "cams").stat().st_mode) == dir_mode


# -------------------------------------------------------------------- workflow level: Snakemake on a finished demo


def _copy_finished(demo_run, dest: Path) -> Path:
    """A copy of the finished demo with modification times kept (Snakemake's view of it is unchanged)."""
    repo, _ = demo_run
    shutil.copytree(repo, dest, symlinks=True)
    return dest


def _planned(repo: Path, *args: str) -> set[str]:
    """Rules of the jobs `snakemake -n` plans for the demo."""
    return planned_rules(repo, *DEMO, *args)


DOWNSTREAM_OF_CAMS = {"eval_seeds", "affinity_labels", "train_affinity", "random_walk", "eval_masks", "train_seg"}


@pytest.mark.slow
@pytest.mark.workflow
def test_edits_inside_the_dataset_rerun_the_stages_that_read_it(demo_run, tmp_path):
    """Case 5: an in-place edit of cls_labels.json or of one ground-truth mask; a mere touch re-runs nothing."""
    repo = _copy_finished(demo_run, tmp_path / "repo")
    assert _planned(repo) == set()
    labels = repo / "data/synthetic/VOCdevkit/VOC2012/cls_labels.json"
    labels.touch()  # same content, new mtime
    assert _planned(repo) == set()
    labels.write_text(labels.read_text() + "\n")  # new content, same meaning: the files differ, so it re-runs
    assert {"train_cam", "eval_seeds", "eval_masks", "eval_seg"} <= _planned(repo)
    assert "make_synthetic_voc" not in _planned(repo)  # the edit is kept, not regenerated
    # An edit that keeps the size and the mtime (`touch -r`) is seen too (the kernel's ctime changes).
    repo = _copy_finished(demo_run, tmp_path / "same_stat")
    mask = sorted((repo / "data/synthetic/VOCdevkit/VOC2012/SegmentationClass").glob("*.png"))[0]
    before = mask.stat()
    data = bytearray(mask.read_bytes())
    data[-20] ^= 0xFF
    mask.write_bytes(bytes(data))
    os.utime(mask, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert mask.stat().st_size == before.st_size and mask.stat().st_mtime_ns == before.st_mtime_ns
    assert {"eval_seeds", "eval_masks", "eval_seg"} <= _planned(repo)
    # A manifest deleted and written again for the same dataset re-runs nothing.
    repo = _copy_finished(demo_run, tmp_path / "manifest")
    (repo / "data/synthetic/VOCdevkit/VOC2012.manifest.tsv").unlink()
    assert _planned(repo) == set()


@pytest.mark.slow
@pytest.mark.workflow
def test_a_deleted_intermediate_is_rebuilt_by_the_same_command(demo_run, tmp_path):
    """Case 6: the whole masks folder or the CAM checkpoint deleted: `snakemake` rebuilds it and what depends on it;
    one CAM file deleted: refused before any job runs, and `--forcerun infer_cam` rebuilds the folder."""
    repo = _copy_finished(demo_run, tmp_path / "one_cam")
    next((repo / "work/runs/0/cam/cams").glob("*.npz")).unlink()
    proc = snakemake(repo, "-n", *DEMO, check=False)
    assert proc.returncode != 0 and "rebuild it with `--forcerun infer_cam`" in proc.stdout + proc.stderr
    planned = _planned(repo, "--forcerun", "infer_cam")
    assert {"infer_cam"} | DOWNSTREAM_OF_CAMS <= planned
    assert "train_cam" not in planned
    repo = _copy_finished(demo_run, tmp_path / "masks")
    shutil.rmtree(repo / "work/runs/0/masks/random_walk")
    planned = _planned(repo)
    assert {"random_walk", "eval_masks", "train_seg", "eval_seg", "collect_results", "report"} <= planned
    assert not {"infer_cam", "train_affinity"} & planned
    repo = _copy_finished(demo_run, tmp_path / "checkpoint")
    (repo / "work/runs/0/cam/checkpoint.pt").unlink()
    assert {"train_cam", "infer_cam"} | DOWNSTREAM_OF_CAMS <= _planned(repo)


@pytest.mark.slow
@pytest.mark.workflow
def test_a_change_is_not_forgotten_after_snakemake_is_stopped(demo_run, tmp_path):
    """Case 4: change cam.lr, SIGTERM Snakemake while train_cam runs: the same command still runs train_cam."""
    import signal
    import subprocess
    import time

    import yaml

    from tests.workflow.helpers import BIN, tool_env

    repo = _copy_finished(demo_run, tmp_path / "repo")
    (repo / "lr.yaml").write_text(yaml.safe_dump({"cam": {"lr": 0.0123}}))
    cmd = [str(BIN / "snakemake"), "--cores", "2", "--configfile", "config/demo.yaml", "lr.yaml"]
    log = repo / "logs/runs/0/train_cam.log"
    log.unlink()
    proc = subprocess.Popen(cmd, cwd=repo, env=tool_env(), start_new_session=True, text=True)
    deadline = time.monotonic() + HANG_GUARD_S
    while not (log.is_file() and "train-cam:" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "train_cam did not start"
        time.sleep(1)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as a terminal or a batch system stops it
    proc.wait(timeout=HANG_GUARD_S)
    assert not (repo / "work/runs/0/cam/checkpoint.pt").exists()  # Snakemake removed the stopped job's output
    assert "train_cam" in _planned(repo, "lr.yaml")
