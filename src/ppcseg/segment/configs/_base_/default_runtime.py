# Runtime shared by every segmentation config (mmseg conventions, iteration-based, CPU or one GPU per process).
default_scope = "mmseg"
custom_imports = dict(
    imports=["ppcseg.segment.models", "ppcseg.segment.dataset", "ppcseg.segment.hooks"], allow_failed_imports=False
)
env_cfg = dict(
    cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0), dist_cfg=dict(backend="nccl")
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="SegLocalVisualizer", vis_backends=vis_backends)
log_processor = dict(by_epoch=False)
log_level = "INFO"
custom_hooks = [dict(type="ReseedEachIteration")]  # exact resume, see ppcseg/segment/hooks.py
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
