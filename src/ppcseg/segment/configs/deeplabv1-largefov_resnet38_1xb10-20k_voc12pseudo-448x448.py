# SEAM + PPC route (official SEAM_deeplabv1_resnet38): DeepLab-v1 LargeFOV on ResNet-38, batch 10, 20k iterations.
_base_ = [
    "_base_/models/deeplabv1-largefov_resnet38.py",
    "_base_/datasets/voc12pseudo.py",
    "_base_/default_runtime.py",
    "_base_/schedules/schedule_20k_deeplab.py",
]
crop_size = (448, 448)
model = dict(data_preprocessor=dict(size=crop_size))
