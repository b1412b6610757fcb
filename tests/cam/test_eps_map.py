"""infer_cam.eps_map: the EPS routes' CAMs from the raw CAM's softmax (default) or from the PCM-refined map, the
unsettled question of which map gave the model zoo's EPS + PPC seeds (docs/faithfulness.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ppcseg.cam.infer import infer_image, scaled_inputs
from ppcseg.config import load_params
from ppcseg.utils.errors import InputError
from tests.stages import StubCamNet


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)


def test_default_is_the_softmax_of_the_raw_cam():
    params = load_params(["params.yaml", "config/routes/eps_ppc.yaml"])
    assert params["infer_cam"]["eps_map"] == "softmax"
    net = StubCamNet(background_channel=20, method="eps").eval()
    default = infer_image(net, _image(), [1, 20], method="eps", scales=[1.0], flip=False)
    explicit = infer_image(net, _image(), [1, 20], method="eps", scales=[1.0], flip=False, eps_map="softmax")
    np.testing.assert_array_equal(default, explicit)


def test_refined_sums_the_pcm_map_and_divides_by_its_max():
    net = StubCamNet(background_channel=20, method="eps").eval()
    image = _image()
    got = infer_image(net, image, [1, 20], method="eps", scales=[1.0], flip=False, eps_map="refined")
    x = scaled_inputs(image, [1.0])[0][None]
    rv = F.interpolate(net(x)["cam_rv"][:, [0, 19]], size=image.shape[:2], mode="bilinear", align_corners=False)
    rv = rv[0].detach().numpy()
    expected = np.clip(rv / (rv.max(axis=(1, 2), keepdims=True) + 1e-5), 0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    softmax = infer_image(net, image, [1, 20], method="eps", scales=[1.0], flip=False)
    assert np.abs(got - softmax).max() > 0.05  # the switch changes the maps


def test_refined_needs_pcm():
    class NoPcm(StubCamNet):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
            return {**super().forward(x), "cam_rv": None}

    net = NoPcm(background_channel=20, method="eps").eval()
    with pytest.raises(InputError, match="infer_cam.eps_map"):
        infer_image(net, _image(), [1], method="eps", scales=[1.0], flip=False, eps_map="refined")


def test_schema_accepts_only_the_two_maps(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("infer_cam:\n  eps_map: refined\n")
    assert load_params(["params.yaml", str(overlay)])["infer_cam"]["eps_map"] == "refined"
    overlay.write_text("infer_cam:\n  eps_map: pcm\n")
    with pytest.raises(InputError, match="infer_cam.eps_map"):
        load_params(["params.yaml", str(overlay)])
