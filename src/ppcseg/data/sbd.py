"""The Semantic Boundaries Dataset (Hariharan et al. 2011), the source of the extra masks in train_aug.

benchmark.tgz unpacks to benchmark_RELEASE/dataset/ with train.txt, val.txt (8 498 + 2 857 ids) and cls/<id>.mat:
MATLAB v5 files holding a struct `GTcls` whose field `Segmentation` is the (H, W) class mask, 0..20, no 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from ppcseg.utils.errors import InputError

# Members of benchmark.tgz that prepare-voc needs: masks and split lists, not the 1 GB of images and instances.
SBD_MEMBERS = ("dataset/cls/", "dataset/train.txt", "dataset/val.txt")


def wanted_member(name: str) -> bool:
    """Whether an archive member (normalised path) is one prepare-voc extracts from benchmark.tgz."""
    return any(f"/{name}".find(f"/{m}") >= 0 for m in SBD_MEMBERS)


def find_dataset_dir(root: Path, archive: Path) -> Path:
    """The folder holding cls/ inside an extracted SBD archive (benchmark_RELEASE/dataset, or dataset)."""
    for candidate in (root / "benchmark_RELEASE" / "dataset", root / "dataset"):
        if (candidate / "cls").is_dir():
            return candidate
    raise InputError(f"{archive}: no benchmark_RELEASE/dataset/cls/ folder in the SBD archive")


def read_sbd_ids(dataset_dir: Path, split: str, archive: Path) -> list[str]:
    path = dataset_dir / f"{split}.txt"
    if not path.is_file():
        raise InputError(f"{archive}: SBD split list benchmark_RELEASE/dataset/{split}.txt is missing")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_sbd_mask(path: str | Path) -> np.ndarray:
    """The class mask of one SBD cls/<id>.mat file as uint8 (H, W); InputError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: SBD mask not found")
    try:
        data = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        mask = np.asarray(data["GTcls"].Segmentation)
    except (KeyError, AttributeError) as err:
        raise InputError(f"{path}: not an SBD class mask (no GTcls.Segmentation)") from err
    except (scipy.io.matlab.MatReadError, ValueError, TypeError, OSError, NotImplementedError) as err:
        raise InputError(f"{path}: cannot read MATLAB file ({err})") from err
    if mask.ndim != 2 or mask.size == 0:
        raise InputError(f"{path}: GTcls.Segmentation must be a 2-D mask, got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > 20:
        raise InputError(f"{path}: GTcls.Segmentation must hold class indices 0..20")
    return mask.astype(np.uint8)
