# VOC 2012: train on train_aug with pseudo-masks (mask_dir is set by `ppcseg train-seg --masks`), evaluate on val GT.
# Augmentation as in the official segmentation code: HSV jitter 10/10/10, flip 0.5, scale [0.5, 1.5], crop 448.
dataset_type = "VOCPseudoMaskDataset"
data_root = "data/VOCdevkit/VOC2012"
crop_size = (448, 448)
train_pipeline = [
    dict(type="LoadVOCImage"),
    dict(type="LoadAnnotations"),
    dict(type="RandomHSV", h_range=10, s_range=10, v_range=10),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomScale", ratio_range=(0.5, 1.5)),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=1.0),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadVOCImage"),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=10,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split="train_aug", mask_dir=None, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, split="val", mask_dir="SegmentationClass", pipeline=test_pipeline
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator
