"""mmengine hooks of the segmentation stage.

* `ReseedEachIteration`: makes a resumed run bit-identical to an uninterrupted one on CPU.

mmengine's resume restores weights, optimiser and scheduler and replays the data loader up to the resumed iteration
(the augmentation runs in loader workers seeded from (seed, rank, worker), so the replay reproduces it), but the
main process's random state (dropout in the heads) restarts from the seed. Reseeding the main process before every
iteration from (seed, iteration) makes that state a function of the iteration alone, so it does not matter whether
the run was interrupted.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


def iteration_seed(seed: int, iteration: int) -> int:
    """A 32-bit seed for one iteration, distinct across (seed, iteration) pairs that matter in practice."""
    return (int(seed) * 1_000_003 + int(iteration)) % 2**32


@HOOKS.register_module()
class ReseedEachIteration(Hook):
    priority = "VERY_HIGH"  # before any hook or the model draws random numbers in this iteration

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.train_dataloader.num_workers == 0:
            # With in-process loading, the replay of skipped batches would consume this process's random state.
            raise RuntimeError("ReseedEachIteration needs train_dataloader.num_workers >= 1 for an exact resume")
        seed = iteration_seed(runner.seed, runner.iter)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
