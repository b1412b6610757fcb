# DeepLab-v1 LargeFOV-style head on the project's ResNet-38: BN with batch statistics, momentum 0.0003.
_base_ = ["segmentor.py"]
norm_cfg = dict(type="BN", momentum=0.0003, requires_grad=True)
model = dict(
    type="PPCEncoderDecoder",
    backbone=dict(type="PPCBackbone", arch="resnet38", weights=None, bn_momentum=0.0003),
    decode_head=dict(
        type="LargeFOVHead",
        in_channels=None,  # from the backbone
        in_index=2,  # conv6
        channels=512,
        dilation=12,
        dropout_ratio=0.5,
        num_classes=21,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    ),
)
