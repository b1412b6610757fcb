"""Download fixtures for the paper-route rehearsal, in the real formats, and the overlay that serves them.

`build_fixtures(dest, ...)` writes into `dest`:

  VOCtrainval_11-May-2012.tar   VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation} with VOC's
                                image sizes (500x375 and 375x500), palette masks with 255 borders
  benchmark.tgz                 benchmark_RELEASE/dataset/{train,val}.txt and cls/<id>.mat (GTcls.Segmentation)
  ilsvrc-cls_rna-a1_cls1000_ep-0001.params
                                an MXNet NDArray list with ResNet-38 A1's key names and shapes (random values,
                                float32, the ImageNet classifier included), as the ademxapp file
  resnet101-63fe2227.pth        a torchvision ResNet-101 state dict (random values)
  saliency.zip                  one greyscale <id>.png saliency map per train_aug image (the EPS route's PFAN maps)
  sources.yaml                  the overlay: data.sources.<name>.url = file:// URL, sha256 = the file's digest,
                                md5 = null (so nothing is recorded in or checked against sources.lock.yaml)

Images show one or two class-coloured ellipses on a noisy background; train_aug = VOC train + the SBD-only ids.
Run as `python -m tests.rehearsal.fixtures DEST` to build them by hand (then pass DEST/sources.yaml to snakemake
after the route overlay and config/rehearsal/rehearsal.yaml).
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
import torch
import torchvision
import yaml
from PIL import Image

from ppcseg.data.download import sha256_file
from ppcseg.models.resnet38 import ResNet38
from tests.data.archive_builders import _mat_bytes, _png_bytes, write_tar
from tests.models.mxnet_files import mx_name, write_params

VOC_SIZES = ((375, 500), (500, 375))  # (H, W): VOC's landscape and portrait sizes
FILES = {
    "voc": "VOCtrainval_11-May-2012.tar",
    "sbd": "benchmark.tgz",
    "resnet38": "ilsvrc-cls_rna-a1_cls1000_ep-0001.params",
    "resnet101": "resnet101-63fe2227.pth",
    "saliency": "saliency.zip",
}


def image_ids(prefix: str, count: int, start: int = 1) -> list[str]:
    return [f"{prefix}_{start + i:06d}" for i in range(count)]


def _scene(image_id: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, label mask without borders) of one image; sizes alternate between landscape and portrait."""
    h, w = VOC_SIZES[index % 2]
    rng = np.random.default_rng(int(image_id.replace("_", "")))
    yy, xx = np.mgrid[:h, :w]
    image = rng.normal(110, 25, (h, w, 3))
    mask = np.zeros((h, w), np.uint8)
    classes = rng.choice(np.arange(1, 21), size=1 + index % 2, replace=False)
    for k, cls in enumerate(classes):
        cy, cx = (0.35 + 0.3 * k) * h, (0.35 + 0.3 * k) * w
        ry, rx = rng.uniform(0.12, 0.22) * h, rng.uniform(0.12, 0.22) * w
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        mask[inside] = cls
        image[inside] = np.array([(37 * cls) % 256, (91 * cls) % 256, (173 * cls) % 256]) + rng.normal(0, 10, 3)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _with_borders(mask: np.ndarray) -> np.ndarray:
    """VOC's SegmentationClass: 255 on the object outlines."""
    edge = np.zeros_like(mask, bool)
    edge[1:] |= mask[1:] != mask[:-1]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    out = mask.copy()
    out[edge] = 255
    return out


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _resnet38_params(path: Path) -> None:
    torch.manual_seed(0)
    state = ResNet38().state_dict()  # PyTorch's initialisation: random, but activations stay finite
    arrays = {
        mx_name(k): v.numpy().astype(np.float32) for k, v in state.items() if not k.endswith("num_batches_tracked")
    }
    rng = np.random.default_rng(0)
    arrays["arg:linear1000_weight"] = rng.normal(0, 0.01, (1000, 4096)).astype(np.float32)
    arrays["arg:linear1000_bias"] = np.zeros(1000, np.float32)
    write_params(path, arrays)


def _resnet101_state(path: Path) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet101(weights=None).state_dict(), path)


def build_archives(dest: Path, *, n_train: int, n_val: int, n_sbd: int) -> None:
    """The VOC, SBD and saliency archives in `dest`.

    VOC train has `n_train` images, val `n_val`; SBD adds `n_sbd` ids to train_aug and lists one VOC train id too
    (the VOC mask wins there) and one VOC val id (excluded from train_aug), as the real SBD lists overlap VOC's.
    """
    dest.mkdir(parents=True, exist_ok=True)
    train, val = image_ids("2007", n_train), image_ids("2007", n_val, start=n_train + 1)
    sbd_only = image_ids("2008", n_sbd)
    # Orientations alternate over train_aug first, so that even one train and one SBD image give CAMs and masks
    # of both sizes.
    scenes = {i: _scene(i, n) for n, i in enumerate(train + sbd_only + val)}

    prefix = "VOCdevkit/VOC2012/"
    voc = [(f"{prefix}JPEGImages/{i}.jpg", _encode(scenes[i][0], "JPEG")) for i in scenes]
    voc += [(f"{prefix}SegmentationClass/{i}.png", _png_bytes(_with_borders(scenes[i][1]))) for i in train + val]
    for split, ids in {"train": train, "val": val, "trainval": sorted(train + val)}.items():
        voc.append((f"{prefix}ImageSets/Segmentation/{split}.txt", "".join(f"{i}\n" for i in ids).encode()))
    write_tar(dest / FILES["voc"], voc)

    sbd_train, sbd_val = sbd_only[: (n_sbd + 1) // 2] + train[:1], sbd_only[(n_sbd + 1) // 2 :] + val[:1]
    sbd = [
        ("benchmark_RELEASE/dataset/train.txt", "".join(f"{i}\n" for i in sbd_train).encode()),
        ("benchmark_RELEASE/dataset/val.txt", "".join(f"{i}\n" for i in sbd_val).encode()),
    ]
    sbd += [(f"benchmark_RELEASE/dataset/cls/{i}.mat", _mat_bytes(scenes[i][1])) for i in sbd_train + sbd_val]
    write_tar(dest / FILES["sbd"], sbd, mode="w:gz")

    with zipfile.ZipFile(dest / FILES["saliency"], "w") as archive:
        for i in train + sbd_only:
            saliency = np.where(scenes[i][1] > 0, 230, 15).astype(np.uint8)
            archive.writestr(f"saliency_map/{i}.png", _encode(saliency, "PNG"))


def build_weights(dest: Path) -> None:
    """The ResNet-38 `.params` and ResNet-101 `.pth` files in `dest` (about 440 + 180 MB)."""
    dest.mkdir(parents=True, exist_ok=True)
    _resnet38_params(dest / FILES["resnet38"])
    _resnet101_state(dest / FILES["resnet101"])


def write_sources(overlay: Path, folders: dict[str, Path]) -> Path:
    """The sources overlay: each source's file (in `folders[name]`) as a file:// URL with its sha256, md5 null."""
    sources = {}
    for name, filename in FILES.items():
        path = (folders[name] / filename).resolve()
        sources[name] = {"url": path.as_uri(), "sha256": sha256_file(path), "md5": None}
    overlay.write_text(
        "# Rehearsal fixtures (tests/rehearsal/fixtures.py): local files in the real formats, by checksum.\n"
        + yaml.safe_dump({"data": {"sources": sources}}, sort_keys=False)
    )
    return overlay


def build_fixtures(dest: Path, *, n_train: int, n_val: int, n_sbd: int) -> Path:
    """Every source file and `sources.yaml` in `dest`; returns the overlay's path."""
    build_archives(dest, n_train=n_train, n_val=n_val, n_sbd=n_sbd)
    build_weights(dest)
    return write_sources(dest / "sources.yaml", dict.fromkeys(FILES, dest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--train", type=int, default=6)
    parser.add_argument("--val", type=int, default=3)
    parser.add_argument("--sbd", type=int, default=3)
    args = parser.parse_args()
    print(build_fixtures(args.dest, n_train=args.train, n_val=args.val, n_sbd=args.sbd))


if __name__ == "__main__":
    main()
