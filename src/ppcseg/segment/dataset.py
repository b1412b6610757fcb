"""VOC-layout dataset for mmseg that trains on a pseudo-mask folder, plus the official augmentations (docs/faithfulness.md)."""

from __future__ import annotations

from pathlib import Path

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS, TRANSFORMS

from ppcseg.data.voc import CLASSES, PALETTE, check_image, load_image, read_ids, voc_dirs
from ppcseg.utils.errors import InputError


@DATASETS.register_module()
class VOCPseudoMaskDataset(BaseSegDataset):
    """Images `<data_root>/JPEGImages/<id>.jpg` of a split list, masks `<mask_dir>/<id>.png`.

    mask_dir: a pseudo-mask folder (training) or a folder under data_root such as 'SegmentationClass' (evaluation).
    Every listed image and mask must exist; the error names the first missing file.
    """

    METAINFO = dict(classes=CLASSES, palette=[PALETTE[3 * i : 3 * i + 3] for i in range(len(CLASSES))])

    def __init__(self, split: str, mask_dir: str | None = "SegmentationClass", **kwargs) -> None:
        self.split = split
        self.mask_dir = mask_dir
        kwargs.setdefault("ignore_index", 255)
        super().__init__(img_suffix=".jpg", seg_map_suffix=".png", reduce_zero_label=False, **kwargs)

    def load_data_list(self) -> list[dict]:
        root = Path(self.data_root)
        images = voc_dirs(root)["images"]
        if self.mask_dir is None:
            raise InputError(f"dataset '{self.split}': no mask folder given (pass --masks DIR)")
        masks = root / self.mask_dir  # an absolute mask_dir replaces root
        if not masks.is_dir():
            raise InputError(f"{masks}: mask folder not found")
        data_list = []
        for image_id in read_ids(root, self.split):
            img_path, seg_path = images / f"{image_id}.jpg", masks / f"{image_id}.png"
            for path in (img_path, seg_path):
                if not path.is_file():
                    raise InputError(f"{path}: listed in split '{self.split}' but missing")
            check_image(img_path)  # an image the reader refuses stops the run here, not in a loader worker
            data_list.append(
                dict(
                    img_path=str(img_path),
                    seg_map_path=str(seg_path),
                    label_map=self.label_map,
                    reduce_zero_label=False,
                    seg_fields=[],
                )
            )
        return data_list


@TRANSFORMS.register_module()
class LoadVOCImage(BaseTransform):
    """mmseg's image loading through ppcseg's one reader (`load_image`: PIL, EXIF ignored), so that train-seg and
    eval-seg see exactly the pixels the CAM stages saw. OpenCV, which `LoadImageFromFile` uses, applies the EXIF
    orientation and converts CMYK and greyscale its own way. Gives BGR, as `LoadImageFromFile` does."""

    def transform(self, results: dict) -> dict:
        img = np.ascontiguousarray(load_image(results["img_path"])[..., ::-1])
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class RandomScale(BaseTransform):
    """Rescale image (bilinear) and mask (nearest) by one factor drawn uniformly from `ratio_range`."""

    def __init__(self, ratio_range: tuple[float, float] = (0.5, 1.5)) -> None:
        self.ratio_range = tuple(ratio_range)

    def transform(self, results: dict) -> dict:
        factor = float(np.random.uniform(*self.ratio_range))
        height, width = results["img"].shape[:2]
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        results["img"] = mmcv.imresize(results["img"], size, interpolation="bilinear")
        for key in results.get("seg_fields", []):
            results[key] = mmcv.imresize(results[key], size, interpolation="nearest")
        results["img_shape"] = results["img"].shape[:2]
        return results


@TRANSFORMS.register_module()
class RandomHSV(BaseTransform):
    """Add independent uniform integer offsets in [-r, r] to OpenCV's 8-bit hue, saturation and value."""

    def __init__(self, h_range: int = 10, s_range: int = 10, v_range: int = 10) -> None:
        self.ranges = (h_range, s_range, v_range)

    def transform(self, results: dict) -> dict:
        hsv = cv2.cvtColor(results["img"], cv2.COLOR_BGR2HSV).astype(np.int32)
        offsets = [np.random.randint(-r, r + 1) for r in self.ranges]
        hsv[..., 0] = (hsv[..., 0] + offsets[0]) % 180  # hue is circular, 0..179 in OpenCV
        hsv[..., 1:] = np.clip(hsv[..., 1:] + np.asarray(offsets[1:]), 0, 255)
        results["img"] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
        return results
