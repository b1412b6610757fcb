"""One line describing the machine a benchmark ran on, shared by every script in benchmarks/.

    from hardware import hardware          # benchmarks/ is on sys.path when a script runs as benchmarks/<name>.py
    print(f"hardware: {hardware(device)}")

CPU model (from /proc/cpuinfo), logical cores, memory, and, when torch is already imported, its version, intra-op
threads and the GPU (name, memory, CUDA version) of `device`.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
        return kib / 2**20
    except (OSError, StopIteration, ValueError):
        return None


def hardware(device: Any = None) -> str:
    """CPU, cores, memory, Python; torch and the GPU of `device` (a torch.device or string) when torch is loaded."""
    memory = memory_gib()
    parts = [
        f"{platform.machine()} {cpu_model()}",
        f"{os.cpu_count()} logical cores",
        f"{memory:.0f} GiB" if memory is not None else "memory unknown",
        f"python {platform.python_version()}",
    ]
    torch = sys.modules.get("torch")
    if torch is not None:
        parts.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        device = torch.device(device) if device is not None else None
        if device is not None and device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            parts.append(f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})")
        else:
            parts.append("no GPU used")
    return "; ".join(parts)


if __name__ == "__main__":
    print(hardware())
