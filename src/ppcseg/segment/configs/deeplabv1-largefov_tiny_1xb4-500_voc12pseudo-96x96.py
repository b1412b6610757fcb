# Demo: the LargeFOV head on the tiny backbone, 96x96 crops, batch 4, 500 iterations (config/demo.yaml
# segmentation.iters; params always set the count), a few minutes on a CPU.
_base_ = ["deeplabv1-largefov_resnet38_1xb10-20k_voc12pseudo-448x448.py"]
crop_size = (96, 96)
max_iters = 500
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch="tiny", bn_momentum=None),
    decode_head=dict(channels=64, norm_cfg=dict(type="BN", requires_grad=True)),
)
train_pipeline = [
    dict(type="LoadVOCImage"),
    dict(type="LoadAnnotations"),
    dict(type="RandomHSV", h_range=10, s_range=10, v_range=10),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomScale", ratio_range=(0.5, 1.5)),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=1.0),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(batch_size=4, num_workers=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
param_scheduler = [dict(type="PolyLR", power=0.9, eta_min=0.0, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=50))
