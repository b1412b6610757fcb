# DeepLab-v2 on ResNet-101 (torchvision layout, so torchvision ImageNet weights load), dilated to output stride 8.
_base_ = ["segmentor.py"]
norm_cfg = dict(type="BN", requires_grad=True)
model = dict(
    type="EncoderDecoder",
    backbone=dict(
        type="ResNet",
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
        init_cfg=None,  # `ppcseg train-seg --weights FILE` sets a local Pretrained init; nothing is downloaded
    ),
    decode_head=dict(
        type="DeepLabV2Head",
        in_channels=2048,
        in_index=3,
        channels=2048,
        dilations=(6, 12, 18, 24),
        dropout_ratio=0.0,
        num_classes=21,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    ),
)
