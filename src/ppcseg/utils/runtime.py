"""Process-wide setup for stages: logging, threads, seeds."""

from __future__ import annotations

import argparse
import logging
import os
import random

import numpy as np


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    """`--seed`: the run's seed (one entry of params `runs`), which the rules fill from the `run` wildcard."""
    parser.add_argument("--seed", type=_seed, default=0, help="seed of this run (params `runs`; default 0)")


def env_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process: torchrun's RANK / WORLD_SIZE / LOCAL_RANK, else srun's
    SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID (a batch script without srun stays one process), else (0, 1, 0).
    """
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Use the threads Snakemake gave the job (SNAKEMAKE_THREADS-like --threads flag), not every core."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
