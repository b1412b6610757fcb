"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd with a generated config.

The node declares one GPU gres backed by a placeholder file, so GPU requests are accepted and scheduled (one GPU job at
a time) although nothing uses a GPU. Accounting is off, as on many small clusters; that is why the profile checks job
status with squeue. `MinJobAge=86400` keeps every finished job's record for a day: with the old 600 s, a demo run
slower than 10 minutes lost its first jobs' records before the tests read them (Slurm 22.05 turns 0, "never purge",
into 2 s). Everything lives under one temporary folder and is stopped and removed by `stop()`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.timing import HANG_GUARD_S

SYSTEM_CONF_DIR = Path("/etc/slurm")
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged")


def missing_binaries() -> list[str]:
    return [b for b in SLURM_BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalSlurm:
    def __init__(self, root: Path, cpus: int | None = None, memory_mb: int | None = None) -> None:
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 2
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        self.memory_mb = memory_mb or int(total_mb * 0.8)
        self.conf = root / "slurm.conf"
        self.processes: list[subprocess.Popen] = []
        self.links: list[Path] = []

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        fake_gpu = self.root / "fake-gpu0"
        fake_gpu.touch()
        ctld_port, d_port = _free_port(), _free_port()
        self.conf.write_text(
            f"""ClusterName=ppcsegtest
SlurmctldHost={self.host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={self.root}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool/slurmd-%n
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/log/slurmctld.log
SlurmdLogFile={self.root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SchedulerParameters=defer_batch
SchedulerTimeSlice=5
MinJobAge=86400
InactiveLimit=0
KillWait=5
NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        (self.root / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File={fake_gpu}\n")

    def _install_default_config(self) -> None:
        """Link the config into /etc/slurm: Snakemake's job step strips SLURM_CONF before its nested srun, which then
        reads the default location, as on a real cluster."""
        for name in ("slurm.conf", "gres.conf"):
            link = SYSTEM_CONF_DIR / name
            if link.exists() or link.is_symlink():
                if not (link.is_symlink() and "ppcseg-slurm" in os.readlink(link)):
                    raise RuntimeError(f"{link} exists (a real Slurm configuration?); not touching it")
                link.unlink()
            SYSTEM_CONF_DIR.mkdir(parents=True, exist_ok=True)
            link.symlink_to(self.root / name)
            self.links.append(link)

    def start(self, timeout: float = HANG_GUARD_S) -> None:
        self._write_config()
        self._install_default_config()
        env = dict(os.environ, **self.env)
        munge_dir = self.root / "munge"
        self.processes.append(
            subprocess.Popen(
                [
                    "munged",
                    "--foreground",
                    "--force",
                    f"--socket={munge_dir}/munge.socket",
                    f"--pid-file={munge_dir}/munged.pid",
                    f"--log-file={munge_dir}/munged.log",
                    f"--seed-file={munge_dir}/munged.seed",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self._wait_for(lambda: (munge_dir / "munge.socket").exists(), HANG_GUARD_S, "munged")
        for daemon in ("slurmctld", "slurmd"):
            self.processes.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(self.conf)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        self._wait_for(self._node_ready, timeout, "slurmd to register")

    def _node_ready(self) -> bool:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=dict(os.environ, **self.env), capture_output=True, text=True
        )
        return proc.returncode == 0 and proc.stdout.strip() in ("idle", "mixed", "allocated")

    def _wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; logs in {self.root}/log")
            if condition():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.root}/log")

    def scontrol_job(self, job_id: str) -> dict[str, str]:
        proc = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], env=dict(os.environ, **self.env), capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise AssertionError(f"slurmctld has no record of job {job_id}: {proc.stderr.strip()}")
        out = proc.stdout
        fields = {}
        for token in out.split():
            if "=" in token:
                key, value = token.split("=", 1)
                fields[key] = value
        return fields

    def stop(self) -> None:
        env = dict(os.environ, **self.env)
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)  # hang guard exempt: a daemon slow to stop is then killed
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        for link in self.links:
            link.unlink(missing_ok=True)
        self.links.clear()


# Fast polling for the tests; real clusters keep the profile's values.
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
                "--max-threads", "2"]  # fmt: skip


def start_or_skip(root: Path) -> LocalSlurm:
    """A started local cluster under `root`, or a skip naming why it cannot run here (stop it when done)."""
    missing = missing_binaries()
    if missing:
        pytest.skip(
            f"Slurm is not installed here (missing {', '.join(missing)}); `bash envs/setup.sh --test` installs it"
        )
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster runs its daemons as root; run the tests as root (as CI does)")
    slurm = LocalSlurm(root)
    try:
        slurm.start()
    except RuntimeError as err:
        slurm.stop()
        pytest.skip(f"the local Slurm cluster could not start: {err}")
    return slurm
