# The official DeepLab schedule: SGD lr 0.001 (head 10x, biases 2x, BN affine frozen), momentum 0.9, wd 5e-4,
# poly 0.9 over 20 000 iterations. One validation at the end; `ppcseg eval-seg` runs the paper's test protocol.
max_iters = 20000
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.001, momentum=0.9, weight_decay=0.0005),
    constructor="DeepLabOptimWrapperConstructor",
)
param_scheduler = [dict(type="PolyLR", power=0.9, eta_min=0.0, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=1000, max_keep_ckpts=1),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
