# The modern option: mmseg's own DeepLabV3+ (output stride 8) on ResNet-101 in torchvision layout, with mmseg's
# default optimiser (no per-layer multipliers) on the same data and 20k poly schedule.
_base_ = [
    "mmseg::_base_/models/deeplabv3plus_r50-d8.py",
    "_base_/datasets/voc12pseudo.py",
    "_base_/default_runtime.py",
    "_base_/schedules/schedule_20k_deeplab.py",
]
crop_size = (448, 448)
norm_cfg = dict(type="BN", requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(type="ResNet", depth=101, norm_cfg=norm_cfg, init_cfg=None),
    decode_head=dict(
        num_classes=21,
        norm_cfg=norm_cfg,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    ),
    auxiliary_head=dict(
        num_classes=21,
        norm_cfg=norm_cfg,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4, avg_non_ignore=True),
    ),
)
optim_wrapper = dict(
    _delete_=True, type="OptimWrapper", optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0005)
)
