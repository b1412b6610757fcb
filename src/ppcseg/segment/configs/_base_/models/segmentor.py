# What every segmentor of the project shares: mmseg's ImageNet normalisation, BGR to RGB, 255-padded labels, whole-
# image inference. The model files next to this one add the backbone and the head.
data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
