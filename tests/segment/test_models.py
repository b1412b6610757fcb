"""Every shipped config builds, trains one step and predicts on CPU; the registered heads and optimiser groups."""

from __future__ import annotations

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mmseg.structures import SegDataSample

import ppcseg.segment.dataset  # noqa: F401
import ppcseg.segment.models  # noqa: F401
from ppcseg.segment.checkpoint import available_configs, config_path, load_config
from ppcseg.utils.errors import InputError

SIZE = 32  # output stride 8: 4x4 features, enough to run every layer (dilated convs are slow on CPU)


def _batch(n: int) -> tuple[list[torch.Tensor], list[SegDataSample]]:
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, SIZE, SIZE), generator=gen, dtype=torch.uint8) for _ in range(n)]
    samples = []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 21, (1, SIZE, SIZE), generator=gen))
        samples.append(sample)
    return inputs, samples


def test_all_configs_are_found():
    names = available_configs()
    for expected in (
        "deeplabv2_r101_1xb10-20k_voc12pseudo-448x448.py",
        "deeplabv1-largefov_resnet38_1xb10-20k_voc12pseudo-448x448.py",
        "deeplabv3plus_r101-d8_1xb10-20k_voc12pseudo-448x448.py",
        "deeplabv1-largefov_tiny_1xb4-500_voc12pseudo-96x96.py",
    ):
        assert expected in names
    with pytest.raises(InputError, match="segmentation.config"):
        config_path("no-such-config.py")


@pytest.mark.parametrize("name", available_configs())
def test_config_trains_and_predicts(name):
    torch.manual_seed(0)
    init_default_scope("mmseg")
    cfg = load_config(name)
    cfg.model.data_preprocessor.size = (SIZE, SIZE)
    model = MODELS.build(cfg.model)
    model.train()
    inputs, samples = _batch(2)  # two images: batch-statistics BN needs more than one value per channel
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    losses = model(**data, mode="loss")
    loss = sum(value for key, value in losses.items() if key.endswith("loss_ce"))
    assert torch.isfinite(loss)
    loss.backward()
    head_grads = [p.grad for p in model.decode_head.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in head_grads)
    model.eval()
    with torch.no_grad():
        pred = model.test_step(dict(inputs=inputs[:1], data_samples=samples[:1]))[0].pred_sem_seg.data
    assert pred.shape == (1, SIZE, SIZE)
    assert 0 <= int(pred.min()) and int(pred.max()) < 21


def test_deeplabv2_head_sums_dilated_classifiers():
    head = MODELS.build(
        dict(type="DeepLabV2Head", in_channels=8, channels=8, num_classes=3, in_index=0, dropout_ratio=0.0)
    )
    assert not hasattr(head, "conv_seg")
    assert [c.dilation for c in head.classifiers] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    x = torch.randn(1, 8, 16, 16)
    expected = sum(c(x) for c in head.classifiers)
    assert torch.allclose(head([x]), expected)


def test_largefov_head_layout():
    head = MODELS.build(
        dict(
            type="LargeFOVHead",
            in_channels=16,
            channels=8,
            num_classes=21,
            in_index=0,
            dropout_ratio=0.5,
            norm_cfg=dict(type="BN", momentum=0.0003),
        )
    )
    first, second = head.convs
    assert first.conv.dilation == (12, 12) and first.conv.kernel_size == (3, 3) and first.conv.out_channels == 8
    assert second.conv.kernel_size == (1, 1) and first.bn.momentum == pytest.approx(0.0003)
    assert head.dropout.p == 0.5 and head.conv_seg.out_channels == 21
    assert head([torch.randn(2, 16, 9, 9)]).shape == (2, 21, 9, 9)


def test_deeplab_parameter_groups():
    init_default_scope("mmseg")
    cfg = load_config("deeplabv1-largefov_tiny_1xb4-500_voc12pseudo-96x96.py")
    model = MODELS.build(cfg.model)
    wrapper_cfg = dict(cfg.optim_wrapper)
    constructor = wrapper_cfg.pop("constructor")
    wrapper = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(type=constructor, optim_wrapper_cfg=wrapper_cfg))(model)
    lr, wd = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.weight_decay
    groups = {(g["lr"] / lr, g["weight_decay"]): g["params"] for g in wrapper.optimizer.param_groups}
    assert set(groups) == {(1.0, wd), (2.0, 0.0), (10.0, wd), (20.0, 0.0)}
    optimised = {id(p) for params in groups.values() for p in params}
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert optimised == {id(p) for m in convs for p in m.parameters()}
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase | torch.nn.GroupNorm)]
    assert norms and not any(id(p) in optimised for m in norms for p in m.parameters())
    assert {id(p) for p in groups[(1.0, wd)]} == {id(m.weight) for m in model.backbone.modules() if m in convs}
