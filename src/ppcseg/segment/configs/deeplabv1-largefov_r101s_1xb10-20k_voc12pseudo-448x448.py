# EPS + PPC route, model zoo's "deeplabv1" (official EPS_deeplabv1_resnet101): LargeFOV head on ResNet-101s.
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
        type="LargeFOVHead",
        in_channels=2048,
        in_index=3,
        channels=512,
        dilation=12,
        dropout_ratio=0.5,
        num_classes=21,
        norm_cfg={{_base_.head_norm_cfg}},
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    ),
)
