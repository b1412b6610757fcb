# EPS + PPC route, model zoo's "deeplabv2" (official EPS_deeplabv2_resnet101): BN ASPP (rates 6/12/18/24 + image
# pooling, 256 channels, 1x1 fusion) on ResNet-101s. Not the sum-of-classifiers DeepLab-v2 of deeplabv2_r101_*.py.
_base_ = [
    "_base_/models/deeplab_r101s.py",
    "_base_/datasets/voc12pseudo.py",
    "_base_/default_runtime.py",
    "_base_/schedules/schedule_20k_deeplab.py",
]
crop_size = (448, 448)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(
        type="WsegASPPHead",
        in_channels=2048,
        in_index=3,
        channels=256,
        dilations=(6, 12, 18, 24),
        dropout_ratio=0.5,
        num_classes=21,
        norm_cfg={{_base_.head_norm_cfg}},
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    ),
)
