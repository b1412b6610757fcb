# The official segmentation code's ResNet-101 "s" (EPS routes of its model zoo): a deep 3x3-conv stem of 64, 64, 128
# channels, dilated to output stride 8 with the first block of each dilated stage at half the dilation. BN momentum
# 0.1 in the backbone, 0.0003 in the head, as there. The head is set by the config that uses this file.
_base_ = ["segmentor.py"]
norm_cfg = dict(type="BN", requires_grad=True)
head_norm_cfg = dict(type="BN", momentum=0.0003, requires_grad=True)
model = dict(
    backbone=dict(
        type="ResNet",
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        deep_stem=True,
        stem_channels=128,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
        init_cfg=None,  # weights come from a converted released checkpoint (ppcseg convert-released)
    ),
)
