"""Segmentation test protocol: the official prepare_func and collect_func (wseg segmentation/experiment/
SEAM_deeplabv1_resnet38/test.py, nested in test_net: taken from the script's syntax tree and run unchanged, with the
config values they read) on samples made by the official ImageNorm, Multiscale and ToTensor (lib/datasets/
transform.py) and img_denorm (lib/utils/imutils.py), against ppcseg.segment.inference (scaled_inputs, predict_logits,
crf_image, predict_labels) with params.yaml's segmentation.test, on the same small random convolutional network (logits
upsampled with aligned corners, as the official DeepLabs do) and generated images.

The CRF function the official test calls, dense_crf_from_deeplabv2, is not defined in the repository; a stand-in
(pydensecrf with unary_from_softmax and the DeepLab-v2 values of params.yaml's crf_params) records what it is handed
(probabilities, image) and runs the CRF, as docs/faithfulness.md describes."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pydensecrf.densecrf as dcrf
import torch
import torch.nn.functional as F
from common import function_from_script, generated, load_file, parser, report, roots
from pydensecrf.utils import unary_from_softmax

from ppcseg.config import load_params
from ppcseg.segment.inference import InferenceProtocol, crf_image, predict_labels, predict_logits, scaled_inputs

NEEDS = ["wseg"]
ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the configs' DATA_MEAN, DATA_STD
MAX_IMAGES = 16


class RandomNet(torch.nn.Module):
    """conv 3x3 stride 2 -> ReLU -> conv 1x1 to 21 classes, upsampled to the input with aligned corners; it also has
    the data preprocessor and encode_decode that ppcseg's inference reads from an mmseg segmentor."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 16, 3, 2, 1)
        self.b = torch.nn.Conv2d(16, 21, 1)
        self.data_preprocessor = types.SimpleNamespace(
            mean=torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1),
            std=torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(torch.relu(self.a(x))) * 3
        return F.interpolate(y, x.shape[-2:], mode="bilinear", align_corners=True)

    def encode_decode(self, x: torch.Tensor, metas: list) -> torch.Tensor:
        return self(x)


@torch.no_grad()
def main() -> int:
    args = parser(__doc__, NEEDS).parse_args()
    root = roots(args, NEEDS)["wseg"]
    lib = root / "segmentation" / "lib"
    transform = load_file(lib / "datasets" / "transform.py", "official_wseg_seg_transform")
    imutils = load_file(lib / "utils" / "imutils.py", "official_wseg_seg_imutils")
    test = load_params([str(ROOT / "params.yaml")])["segmentation"]["test"]
    crf = test["crf_params"]
    handed: dict[str, np.ndarray] = {}

    def deeplabv2_crf(prob: np.ndarray, img: np.ndarray) -> np.ndarray:
        """Stands in for the undefined dense_crf_from_deeplabv2: records its inputs, CRF as dense_crf builds it."""
        handed["prob"], handed["img"] = prob.copy(), img.copy()
        c, h, w = prob.shape
        d = dcrf.DenseCRF2D(w, h, c)
        d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(prob)))
        d.addPairwiseGaussian(sxy=crf["gaussian_sxy"], compat=crf["gaussian_compat"])
        rgb = np.ascontiguousarray(img.transpose(1, 2, 0))
        d.addPairwiseBilateral(
            sxy=crf["bilateral_sxy"], srgb=crf["bilateral_srgb"], rgbim=rgb, compat=crf["bilateral_compat"]
        )
        return np.array(d.inference(crf["iters"]), dtype=np.float32).reshape(c, h, w)

    cfg = types.SimpleNamespace(
        TEST_MULTISCALE=list(test["scales"]), TEST_FLIP=test["flip"], TEST_CRF=True, MODEL_NUM_CLASSES=21
    )
    namespace = {
        "cfg": cfg,
        "torch": torch,
        "F": F,
        "np": np,
        "img_denorm": imutils.img_denorm,
        "dense_crf_from_deeplabv2": deeplabv2_crf,
    }
    test_py = root / "segmentation" / "experiment" / "SEAM_deeplabv1_resnet38" / "test.py"
    prepare = function_from_script(test_py, "prepare_func", namespace)
    collect = function_from_script(test_py, "collect_func", namespace)
    net = RandomNet().eval()
    with_crf = InferenceProtocol.from_params("multi", {**test, "crf": True})
    without_crf = InferenceProtocol.from_params("multi", {**test, "crf": False})

    n = min(args.images, MAX_IMAGES)
    inputs = probs = 0.0
    image_bytes = labels_crf = labels_plain = pixels = 0
    for image, _, _, _ in generated(n):
        sample = {"image": image.copy()}
        sample = transform.ToTensor()(transform.Multiscale(cfg.TEST_MULTISCALE)(transform.ImageNorm(MEAN, STD)(sample)))
        sample = {k: v[None] for k, v in sample.items()}  # the loader's batch of one
        batch = prepare(sample)
        step = 2 if cfg.TEST_FLIP else 1
        for scale, x in zip(cfg.TEST_MULTISCALE, batch[::step], strict=True):
            ours_x = torch.from_numpy(scaled_inputs(net, image, scale)).permute(2, 0, 1)
            inputs = max(inputs, float((x[0] - ours_x).abs().max()))
        results = [net(x) for x in batch]
        cfg.TEST_CRF = False
        theirs_plain = collect(list(results), sample)
        cfg.TEST_CRF = True
        theirs_crf = collect(list(results), sample)

        logits = predict_logits(net, image, with_crf.scales, with_crf.flip, with_crf.fix_logit_alignment)
        probs = max(probs, float(np.abs(torch.softmax(logits, 0).numpy() - handed["prob"]).max()))
        image_bytes += int((crf_image(net, image).transpose(2, 0, 1) != handed["img"]).sum())
        labels_crf += int((predict_labels(net, image, with_crf) != theirs_crf).sum())
        labels_plain += int((predict_labels(net, image, without_crf) != theirs_plain).sum())
        pixels += image.shape[0] * image.shape[1]
    scales = ", ".join(f"{s:g}" for s in cfg.TEST_MULTISCALE)
    return (
        0
        if report(
            f"wseg test.py prepare_func / collect_func vs segment.inference, {n} images, scales {scales}"
            + (", flip" if cfg.TEST_FLIP else ""),
            f"network inputs agree to {inputs:.2g}, probabilities to {probs:.2g}, {image_bytes} CRF image values "
            f"differ, {labels_plain} of {pixels} labels differ without the CRF, {labels_crf} with it",
            "inputs agree to 1.2e-6, probabilities to 5.4e-7, CRF image byte-identical, labels identical",
            inputs <= 1.2e-6 and probs <= 5.4e-7 and image_bytes == 0 and labels_plain == 0 and labels_crf == 0,
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
