"""The bad-input corpus shared by the reliability tests."""

import pytest
import torch
import yaml

from ppcseg.data.synthetic import make_synthetic_voc
from ppcseg.models.cam_net import build_cam_net
from ppcseg.utils.checkpoint import save_checkpoint
from tests.reliability.helpers import PARAMS, TINY_CAM, cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small valid dataset, a tiny CAM checkpoint and its CAMs; each test breaks a copy of one piece."""
    base = tmp_path_factory.mktemp("corpus")
    root = base / "VOC2012"
    make_synthetic_voc(
        root, seed=3, image_size=64, num_train=6, num_val=4, num_train_aug_extra=2, min_classes=1, max_classes=2
    )
    overlay = base / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({"cam": TINY_CAM, "infer_cam": {"scales": [1.0], "flip": False}}))
    torch.manual_seed(0)
    net = build_cam_net(yaml.safe_load(open(PARAMS))["cam"] | TINY_CAM, None)
    save_checkpoint(base / "cam.pt", {"model": net.state_dict()}, net.meta)
    assert cli("infer-cam", overlay, "--data", root, "--checkpoint", base / "cam.pt", "--out", base / "cams")[0] == 0
    return base, root, overlay
