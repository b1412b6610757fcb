# EPS + PPC route (official EPS_deeplabv2_resnet101): DeepLab-v2 ASPP on ResNet-101, batch 10, 20k iterations.
_base_ = [
    "_base_/models/deeplabv2_r101.py",
    "_base_/datasets/voc12pseudo.py",
    "_base_/default_runtime.py",
    "_base_/schedules/schedule_20k_deeplab.py",
]
crop_size = (448, 448)
model = dict(data_preprocessor=dict(size=crop_size))
