"""The demo pipeline through `snakemake --profile slurm` on a real one-node Slurm cluster started by the tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.slurm.cluster import FAST_POLLING as FAST
from tests.slurm.cluster import LocalSlurm, start_or_skip
from tests.timing import HANG_GUARD_S
from tests.workflow.helpers import BIN, REPO, planning_copy, scratch_repo, tool_env

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]
GPU_RULES = {"train_cam", "infer_cam", "train_affinity", "random_walk", "train_seg", "eval_seg"}
DEMO = ["--configfile", "config/demo.yaml"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    slurm = start_or_skip(Path(tempfile_root(tmp_path_factory)))
    yield slurm
    slurm.stop()


def tempfile_root(factory) -> Path:
    # Slurm's unix socket paths must stay short: use a short folder under /tmp rather than pytest's deep one.
    root = Path("/tmp") / f"ppcseg-slurm-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    return root


def slurm_snakemake(repo: Path, cluster: LocalSlurm, *args: str, timeout: float = HANG_GUARD_S):
    env = dict(tool_env(), **cluster.env)
    return subprocess.run(
        [str(BIN / "snakemake"), "--profile", "slurm", *args, *FAST],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_ids(output: str) -> dict[str, str]:
    """rule -> Slurm job id, from the plugin's 'Job N has been submitted with SLURM jobid X' lines."""
    ids = {}
    for rule, jobid in re.findall(r"rule (\w+).*?SLURM jobid (\d+)", output, flags=re.S):
        ids.setdefault(rule, jobid)
    return ids


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    repo = scratch_repo(tmp_path_factory.mktemp("slurm"))
    start = time.monotonic()
    proc = slurm_snakemake(repo, cluster, "results/voc_miou.csv", *DEMO)
    print(f"slurm demo: {time.monotonic() - start:.0f} s")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-8000:]
    return repo, proc


def test_demo_completes_under_slurm_with_requested_resources(cluster, slurm_run):
    repo, proc = slurm_run
    assert (repo / "results/voc_miou.csv").is_file()
    out = proc.stdout + proc.stderr
    submitted = re.findall(r"SLURM jobid (\d+)", out)
    assert len(submitted) >= 8, out[-3000:]
    logs = list((repo / "logs/slurm").rglob("*.log"))
    assert logs, "the profile keeps the Slurm logs of successful jobs"
    for log in logs:
        jobid = log.stem
        fields = cluster.scontrol_job(jobid)
        rule = log.parent.parent.name if log.parent.name.isdigit() else log.parent.name
        assert fields["JobState"] == "COMPLETED", (rule, fields["JobState"])
        if rule.split("_wildcards")[0] in GPU_RULES or any(rule.startswith(g) for g in GPU_RULES):
            assert "gpu" in fields.get("TresPerJob", "") + fields.get("TresPerNode", "") + fields.get("TRES", "")
        assert int(fields["NumCPUs"]) >= 1


def test_cancelled_job_fails_then_resume_completes(cluster, slurm_run, tmp_path):
    repo, _ = slurm_run
    # Invalidate the segmentation stage and cancel its job while it runs.
    for path in (
        "work/runs/0/seg/checkpoint.pth",
        "results/runs/0/metrics/segmentation_single.json",
        "results/runs/0/metrics/segmentation_msf-crf.json",
        "results/voc_miou.csv",
    ):
        (repo / path).unlink()
    env = dict(tool_env(), **cluster.env)
    run = subprocess.Popen(
        [str(BIN / "snakemake"), "--profile", "slurm", "results/voc_miou.csv", *DEMO, *FAST, "--retries", "0"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + HANG_GUARD_S
    cancelled = False
    while time.monotonic() < deadline and not cancelled:
        queue = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], env=env, capture_output=True, text=True).stdout
        for line in queue.splitlines():
            jobid, _, state = line.split()
            if state == "RUNNING":
                subprocess.run(["scancel", jobid], env=env, check=True)
                cancelled = True
        time.sleep(1)
    output, _ = run.communicate(timeout=HANG_GUARD_S)
    assert cancelled, "no job was seen running"
    assert run.returncode != 0, "Snakemake must report the cancelled job as a failure"
    before = {p: p.stat().st_mtime for p in (repo / "work/runs/0/cam").glob("*.pt")}
    proc = slurm_snakemake(repo, cluster, "results/voc_miou.csv", *DEMO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert (repo / "results/voc_miou.csv").is_file()
    after = {p: p.stat().st_mtime for p in (repo / "work/runs/0/cam").glob("*.pt")}
    assert before == after, "upstream stages must not be recomputed"
    assert "train_cam" not in set(job_ids(proc.stdout + proc.stderr))


def test_paper_dry_run_shows_gpu_requests(cluster):
    env = dict(tool_env(), **cluster.env)
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "slurm", "-n", "--forceall"],
        cwd=planning_copy(),
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"rule train_cam:.*?resources:.*?gpu=1", proc.stdout, flags=re.S)


SRUN_OVERLAY = """
cam: {pretrained: false, max_steps: 2, batch_size: 4, crop_size: 64, view2_size: 32, resize_long: [64, 80]}
segmentation: {iters: 2, batch_size: 2, crop_size: 48}
"""


@pytest.fixture(scope="module")
def small_voc(tmp_path_factory) -> Path:
    from ppcseg.data.synthetic import make_synthetic_voc

    root = tmp_path_factory.mktemp("srun") / "VOC2012"
    settings = dict(image_size=64, num_train=8, num_val=2, num_train_aug_extra=0, min_classes=1, max_classes=2)
    return make_synthetic_voc(root, seed=0, **settings)


@pytest.mark.parametrize("stage", ["train-cam", "train-seg"])
def test_two_tasks_under_srun_train_as_one(cluster, small_voc, tmp_path, stage):
    """`srun -n 2 ppcseg <stage>`: ranks and world size come from Slurm (gloo on this CPU node), one output."""
    overlay = tmp_path / "small.yaml"
    overlay.write_text(SRUN_OVERLAY)
    params = ["--params", "params.yaml", "--params", "config/demo.yaml", "--params", str(overlay)]
    data = ["--data", str(small_voc)]
    if stage == "train-cam":
        args = [*data, "--state-dir", str(tmp_path / "state")]
        args += ["--out", str(tmp_path / "out.pt"), "--out-loss", str(tmp_path / "loss.csv")]
    else:  # the generator's ground-truth masks stand in for pseudo-masks
        args = [*data, "--masks", str(small_voc / "SegmentationClassAug")]
        args += ["--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "out.pt")]
    log = tmp_path / "stage.log"
    cmd = ["srun", "-n", "2", "--cpus-per-task", "1", "--time", "10", str(BIN / "ppcseg"), stage, *params]
    proc = subprocess.run(
        [*cmd, "--threads", "1", *args, "--log-file", str(log)],
        cwd=REPO,
        env=dict(tool_env(), **cluster.env),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + (log.read_text()[-3000:] if log.exists() else "")
    assert (tmp_path / "out.pt").is_file()
    expected = "GPU number: 2" if stage == "train-seg" else "train-cam: 2 process(es)"  # mmengine: "GPU number"
    assert expected in log.read_text()
