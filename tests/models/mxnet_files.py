"""MXNet `.params` files as MXNet writes them, for the tests: the ResNet-38 key names (written independently from
ppcseg.models.mxnet_params) and the NDArray list format."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

BN_MX = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_var"}
FLAGS = {np.dtype("<f4"): 0, np.dtype("<f8"): 1, np.dtype("<f2"): 2, np.dtype("<i4"): 4}


def mx_name(key: str) -> str:
    """Inverse of the name mapping, written independently from the module under test."""
    module, *rest = key.split(".")
    if key == "conv1a.weight":
        return "arg:conv1a_weight"
    if module == "bn7":
        suffix = BN_MX[rest[0]]
        return ("aux:" if suffix.startswith("moving") else "arg:") + f"bn7_{suffix}"
    stage = module[1]
    block = "a" if "_" not in module else "b" + module.split("_")[1]
    layer, param = rest
    kind, branch = layer.split("_", 1)  # conv_branch2a -> conv, branch2a
    if kind == "conv":
        return f"arg:res{stage}{block}_{branch}_weight"
    suffix = BN_MX[param]
    return ("aux:" if suffix.startswith("moving") else "arg:") + f"bn{stage}{block}_{branch}_{suffix}"


def write_params(path: Path, arrays: dict[str, np.ndarray], version: str = "v2") -> None:
    """An NDArray list file as MXNet writes it (see ppcseg.models.mxnet_params for the layout)."""
    out = [struct.pack("<QQQ", 0x112, 0, len(arrays))]
    for arr in arrays.values():
        arr = np.ascontiguousarray(arr)
        if version == "v2":
            out.append(struct.pack("<Ii", 0xF993FAC9, 0) + struct.pack(f"<I{arr.ndim}q", arr.ndim, *arr.shape))
        elif version == "v1":
            out.append(struct.pack("<I", 0xF993FAC8) + struct.pack(f"<I{arr.ndim}q", arr.ndim, *arr.shape))
        else:  # legacy: no magic, uint32 dims
            out.append(struct.pack(f"<I{arr.ndim}I", arr.ndim, *arr.shape))
        out.append(struct.pack("<iii", 1, 0, FLAGS[arr.dtype]) + arr.tobytes())
    out.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        out.append(struct.pack("<Q", len(name.encode())) + name.encode())
    path.write_bytes(b"".join(out))
