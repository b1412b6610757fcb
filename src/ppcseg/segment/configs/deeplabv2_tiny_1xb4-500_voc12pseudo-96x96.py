# Demo of the EPS + PPC route's head: the DeepLab-v2 ASPP classifier (rates 6/12/18/24) on the tiny backbone, with
# the schedule and data of the LargeFOV demo config.
_base_ = ["deeplabv1-largefov_tiny_1xb4-500_voc12pseudo-96x96.py"]
model = dict(
    decode_head=dict(
        _delete_=True,
        type="DeepLabV2Head",
        in_channels=None,  # from the backbone
        in_index=2,  # conv6
        channels=64,
        dilations=(6, 12, 18, 24),
        dropout_ratio=0.0,
        num_classes=21,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    ),
)
