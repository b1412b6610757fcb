"""The demo's table and time under CPU numerics settings: does any give one table whatever the CPU, and at what cost?

    python benchmarks/bench_demo_settings.py                       # every setting, one full demo each (~7 min each)
    python benchmarks/bench_demo_settings.py --settings native default
    python benchmarks/bench_demo_settings.py --lock /tmp/some.lock  # hold a file lock during each demo run

Each setting runs the whole demo (`snakemake --cores 2 --configfile config/demo.yaml`) in a fresh scratch copy of the
repository with some environment variables set, then prints the table's mIoU rows and the time against `native`
(no setting) measured in the same invocation:

- `ATEN_CPU_CAPABILITY=default|avx2|avx512`: which vectorised kernels PyTorch's own CPU operators use. PyTorch does
  not cap the request at what the CPU has (AVX-512 kernels on an AVX2 CPU die with SIGILL), so a capability the CPU
  lacks is skipped, and one equal to the native is the native run.
- `onednn-off`: `torch.backends.mkldnn.enabled = False` in every process (through a `sitecustomize` module on
  PYTHONPATH, for this measurement only): convolutions then run on PyTorch's own kernels instead of oneDNN's.
- `MKL_CBWR=COMPATIBLE`: MKL's conditional numerical reproducibility, one code path on every x86 CPU.
- `all`: the three together; `all-old-isa`: the same with MKL and oneDNN held to SSE4 (`MKL_ENABLE_INSTRUCTIONS`,
  `DNNL_MAX_CPU_ISA`), standing in for an older CPU.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from hardware import hardware

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
SITECUSTOMIZE = """import os
if os.environ.get("BENCH_ONEDNN") == "off":
    import torch
    torch.backends.mkldnn.enabled = False
"""
SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "default": {"ATEN_CPU_CAPABILITY": "default"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "onednn-off": {"BENCH_ONEDNN": "off"},
    "mkl-cbwr": {"MKL_CBWR": "COMPATIBLE"},
    "all": {"ATEN_CPU_CAPABILITY": "default", "BENCH_ONEDNN": "off", "MKL_CBWR": "COMPATIBLE"},
    # `all` as on an older CPU: MKL and oneDNN held to SSE4 code paths (does the table still move with the ISA?)
    "all-old-isa": {
        "ATEN_CPU_CAPABILITY": "default",
        "BENCH_ONEDNN": "off",
        "MKL_CBWR": "COMPATIBLE",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "DNNL_MAX_CPU_ISA": "SSE41",
    },
}
ROWS = ("seed", "mask", "segmentation", "segmentation-msf-crf")


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as handle:
        return set(next(line for line in handle if line.startswith("flags")).split(":", 1)[1].split())


def capability(env: dict[str, str]) -> str:
    """The kernels PyTorch really uses under `env`."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def run_demo(env: dict[str, str], scratch: Path, lock: Path | None) -> tuple[float, dict[str, str]]:
    """(seconds, mIoU per row) of one demo run from a fresh copy."""
    sys.path.insert(0, str(REPO))
    from tests.workflow.helpers import scratch_repo

    repo = scratch_repo(scratch)
    env = {**env, "PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], str(repo / "src")])}  # the copy's code
    with open(lock, "w") if lock else nullcontext() as handle:
        if handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
        start = time.monotonic()
        cmd = [str(BIN / "snakemake"), "--cores", "2", "--configfile", "config/demo.yaml"]
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - start
    if proc.returncode:
        raise SystemExit(f"the demo failed under {env}:\n{proc.stderr[-3000:]}")
    with open(repo / "results" / "voc_miou.csv", newline="") as handle:
        table = {row["stage"]: row["mIoU"] for row in csv.DictReader(handle)}
    return elapsed, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--lock", type=Path, help="a file to lock during each demo run (to share the machine)")
    args = parser.parse_args()
    names = ["native", *(s for s in args.settings if s != "native")]
    print(f"hardware: {hardware()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        base_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        base_env["PYTHONPATH"] = str(site)
        native_capability = capability(base_env)
        results: dict[str, tuple[float, dict[str, str]]] = {}
        for name in names:
            env = {**base_env, **SETTINGS[name]}
            if name == "avx512" and "avx512f" not in cpu_flags():
                print(f"{name}: this CPU has no AVX-512 (its kernels would die with SIGILL): skipped", flush=True)
                continue
            used = capability(env)
            if name != "native" and set(SETTINGS[name]) == {"ATEN_CPU_CAPABILITY"} and used == native_capability:
                print(f"{name}: PyTorch uses {used} kernels, as native on this CPU: the same run, skipped", flush=True)
                continue
            results[name] = run_demo(env, Path(scratch) / name, args.lock)
            seconds, table = results[name]
            print(
                f"{name} ({used} kernels): {seconds:.0f} s, " + ", ".join(f"{r} {table[r]}" for r in ROWS), flush=True
            )
    native_time = results["native"][0]
    print(f"\n| setting | {' | '.join(ROWS)} | time | vs native |\n|---|{'---|' * len(ROWS)}---|---|")
    for name, (seconds, table) in results.items():
        cells = " | ".join(table[r] for r in ROWS)
        print(f"| {name} | {cells} | {seconds / 60:.1f} min | {seconds / native_time:.2f}x |")
    for row in ROWS:
        values = sorted(float(table[row]) for _, table in results.values())
        print(f"{row}: min {values[0]:.2f}, max {values[-1]:.2f}")


if __name__ == "__main__":
    main()
