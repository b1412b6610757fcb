"""The mmcv-lite / torch>=2.6 compatibility layer: light mmcv.ops, safe checkpoint loading, focal loss."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

import ppcseg.segment.compat as compat
from ppcseg.utils.errors import InputError


def test_mmseg_imports_with_light_ops():
    import mmseg.models  # noqa: F401  (fails with "No module named 'mmcv._ext'" without the compat layer)
    from mmcv.ops import bilinear_grid_sample, point_sample  # noqa: F401

    with pytest.raises(ModuleNotFoundError, match="compiled ops"):
        from mmcv.ops import CrissCrossAttention  # noqa: F401


def test_point_sample_is_bilinear():
    from mmcv.ops import point_sample

    feature = torch.arange(4.0).view(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    centre = torch.tensor([[[0.5, 0.5]]])  # relative coordinates of the image centre
    assert point_sample(feature, centre, align_corners=False).item() == pytest.approx(1.5)


def test_sigmoid_focal_loss_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    target = torch.tensor([1])
    gamma, alpha = 2.0, 0.25
    # class 0 is a negative: p = 0.5; class 1 is the positive: p = sigmoid(2)
    p1 = 1 / (1 + math.exp(-2))
    neg = (1 - alpha) * 0.5**gamma * -math.log(0.5)
    pos = alpha * (1 - p1) ** gamma * -math.log(p1)
    assert compat.sigmoid_focal_loss(logits, target, gamma, alpha, None, "none").tolist()[0] == pytest.approx(
        [neg, pos], rel=1e-5
    )
    assert compat.sigmoid_focal_loss(logits, target).item() == pytest.approx(neg + pos, rel=1e-5)
    # target == num_classes means "no positive class" (mmcv's convention)
    none = compat.sigmoid_focal_loss(logits, torch.tensor([2]), reduction="none")
    assert none[0, 1].item() == pytest.approx((1 - alpha) * p1**gamma * -math.log(1 - p1), rel=1e-5)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_untrusted_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": {}, "obj": _Evil()}, handle)
    with pytest.raises(InputError, match="weights_only"):
        compat.load_local_checkpoint(str(path))


def test_plain_weights_load_anywhere_and_runner_checkpoints_only_when_trusted(tmp_path):
    plain = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.ones(2)}, plain)
    assert compat.load_local_checkpoint(str(plain))["conv.weight"].sum() == 2

    work = tmp_path / "work"
    work.mkdir()
    runner_like = work / "iter_2.pth"
    torch.save({"meta": {"seed": np.int64(3)}, "state_dict": {}}, runner_like)  # numpy scalars: not weights_only
    with pytest.raises(InputError):
        compat.load_local_checkpoint(str(runner_like))
    compat.trust_checkpoints_under(work)
    assert compat.load_local_checkpoint(str(runner_like))["meta"]["seed"] == 3


def test_mmengine_uses_the_safe_loader(tmp_path):
    from mmengine.runner import CheckpointLoader

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"obj": _Evil()}, handle)
    with pytest.raises(InputError):
        CheckpointLoader.load_checkpoint(str(path), map_location="cpu")
