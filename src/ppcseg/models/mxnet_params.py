"""Read MXNet `.params` files (the NDArray list format) without mxnet, and map ResNet-38 names to this package's.

The ImageNet ResNet-38 weights (`ilsvrc-cls_rna-a1_cls1000_ep-0001.params`, model A1 of "Wider or Deeper") exist
only in this format. The official code converts them with `mxnet.nd.load`; mxnet no longer installs on current
Python, so this module parses the binary format directly.

File layout (all integers little-endian):

    uint64  list magic 0x112
    uint64  reserved (0)
    uint64  number of arrays N
    N x NDArray:
        uint32  array magic: 0xF993FAC9 (V2), 0xF993FACA (V3, numpy shape semantics) or 0xF993FAC8 (V1).
                Files written by MXNet < 0.9 have no magic: this word is already the shape's ndim (legacy).
        int32   storage type (V2/V3 only): 0 = dense; sparse arrays are not supported
        shape:  uint32 ndim, then ndim dims as int64 (V1/V2/V3) or uint32 (legacy)
        (an array with ndim 0 ends here: it holds no data)
        int32   device type, int32 device id   (the context it was saved from; ignored)
        int32   dtype flag: 0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64
        bytes   prod(shape) * itemsize raw values, C order
    uint64  number of names M (M == N, or 0 for an unnamed list)
    M x (uint64 length, UTF-8 bytes): names such as `arg:res2a_branch2a_weight` or `aux:bn7_moving_mean`

Parameter names of ResNet-38 A1 (prefix `arg:` for learned parameters, `aux:` for BN running statistics):

    conv1a_weight                                   -> conv1a.weight
    res{S}{B}_branch{1,2a,2b1,2b2}_weight           -> b{S}[_{i}].conv_branch{...}.weight
    bn{S}{B}_branch{2a,2b1,2b2}_{gamma,beta}        -> b{S}[_{i}].bn_branch{...}.{weight,bias}
    bn{S}{B}_branch{...}_moving_{mean,var}          -> b{S}[_{i}].bn_branch{...}.running_{mean,var}
    bn7_{gamma,beta,moving_mean,moving_var}         -> bn7.{weight,bias,running_mean,running_var}
    linear1000_{weight,bias}                        -> (ImageNet classifier, dropped)

where S is the stage 2..7 and B is `a` for the first block of a stage (module `bS`) or `b{i}` for the i-th further
block (module `bS_i`).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from ppcseg.utils.errors import InputError

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
}


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise InputError(f"{self.path}: truncated MXNet .params file (need {size} bytes at offset {self.pos})")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise InputError(f"{self.path}: truncated MXNet .params file (array data at offset {self.pos})")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk


def _read_array(reader: _Reader, index: int) -> np.ndarray:
    (first,) = reader.take("<I")
    if first in (V2_MAGIC, V3_MAGIC):
        (stype,) = reader.take("<i")
        if stype != 0:
            raise InputError(f"{reader.path}: array {index} has sparse storage type {stype}, not supported")
        (ndim,) = reader.take("<I")
        shape = reader.take(f"<{ndim}q")
    elif first == V1_MAGIC:
        (ndim,) = reader.take("<I")
        shape = reader.take(f"<{ndim}q")
    else:  # legacy: no magic, the word read is ndim and dims are uint32
        ndim = first
        if ndim > 32:
            raise InputError(f"{reader.path}: array {index} has an unknown header word {first:#x}: not an MXNet file")
        shape = reader.take(f"<{ndim}I")
    if ndim == 0:
        return np.zeros((0,), dtype=np.float32)
    if any(d < 0 for d in shape):
        raise InputError(f"{reader.path}: array {index} has an unknown shape {shape}")
    reader.take("<ii")  # context (device type, device id)
    (flag,) = reader.take("<i")
    if flag not in DTYPES:
        raise InputError(f"{reader.path}: array {index} has unknown dtype flag {flag}")
    dtype = DTYPES[flag]
    count = int(np.prod(shape))
    return np.frombuffer(reader.raw(count * dtype.itemsize), dtype=dtype).reshape(shape).copy()


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an MXNet `.params` file by name (with their `arg:`/`aux:` prefixes), in file order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: MXNet .params file not found")
    reader = _Reader(path.read_bytes(), path)
    magic, _reserved = reader.take("<QQ")
    if magic != LIST_MAGIC:
        raise InputError(f"{path}: not an MXNet .params file (header {magic:#x}, expected {LIST_MAGIC:#x})")
    (count,) = reader.take("<Q")
    if count > 1_000_000:
        raise InputError(f"{path}: implausible array count {count}: corrupt MXNet .params file")
    arrays = [_read_array(reader, i) for i in range(count)]
    (num_names,) = reader.take("<Q")
    if num_names != count:
        raise InputError(f"{path}: {count} arrays but {num_names} names: corrupt or unnamed MXNet .params file")
    names = []
    for _ in range(num_names):
        (length,) = reader.take("<Q")
        names.append(reader.raw(length).decode("utf-8", errors="replace"))
    if reader.pos != len(reader.data):
        raise InputError(f"{path}: {len(reader.data) - reader.pos} trailing bytes: corrupt MXNet .params file")
    return dict(zip(names, arrays, strict=True))


_BN_SUFFIX = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}
_BLOCK = re.compile(r"^(res|bn)(\d)(a|b\d+)_branch(1|2a|2b1|2b2)_(weight|gamma|beta|moving_mean|moving_var)$")
_BN7 = re.compile(r"^bn7_(gamma|beta|moving_mean|moving_var)$")


def resnet38_name(mx_name: str) -> str | None:
    """The ResNet38 state-dict key of an MXNet parameter name; None for the ImageNet classifier; KeyError if unknown."""
    name = mx_name.split(":", 1)[1] if ":" in mx_name else mx_name
    if name == "conv1a_weight":
        return "conv1a.weight"
    if name.startswith("linear1000_"):
        return None
    match = _BN7.match(name)
    if match:
        return "bn7." + _BN_SUFFIX[match.group(1)]
    match = _BLOCK.match(name)
    if match:
        kind, stage, block, branch, suffix = match.groups()
        module = f"b{stage}" if block == "a" else f"b{stage}_{block[1:]}"
        if kind == "res" and suffix == "weight":
            return f"{module}.conv_branch{branch}.weight"
        if kind == "bn" and suffix in _BN_SUFFIX:
            return f"{module}.bn_branch{branch}.{_BN_SUFFIX[suffix]}"
    raise KeyError(mx_name)


def resnet38_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ResNet-38 `.params` file and rename its arrays to ResNet38 state-dict keys."""
    path = Path(path)
    renamed: dict[str, np.ndarray] = {}
    for mx_name, array in read_params(path).items():
        try:
            key = resnet38_name(mx_name)
        except KeyError:
            raise InputError(f"{path}: parameter '{mx_name}' is not part of ResNet-38 (model A1)") from None
        if key is not None:
            renamed[key] = array
    return renamed
