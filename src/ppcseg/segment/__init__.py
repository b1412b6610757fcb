"""Final segmentation stage on mmsegmentation 1.2.2: configs, registered models and dataset, train/eval/export stages.

Importing this package first installs the mmcv-lite / torch compatibility layer (compat.py), so every module below,
every config's `custom_imports` and every forked DataLoader worker sees it before mmcv.ops or mmseg are imported.
"""

from ppcseg.segment import compat  # noqa: F401  (must run before any mmcv.ops / mmseg import)
