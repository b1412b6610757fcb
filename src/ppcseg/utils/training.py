"""What a resumable training run is made of, shared by train-cam, train-affinity and train-seg's run marker.

A run is identified by a JSON-able dict: the settings that change what it computes and fingerprints of the files it
reads. Its states (`state_<step>.pt` in the run's state folder) carry that identity, the model, the optimiser, the
loss rows so far and, for a stage whose dropout draws from the global generator, the RNG states. A restart resumes
only a state of the same identity, so a re-run on other settings or on new data under the same paths starts over,
and it rewrites the loss curve of the whole run from the saved rows: Snakemake deletes an interrupted job's outputs,
the CSV included.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppcseg.utils.checkpoint import load_checkpoint, save_checkpoint
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import stat_fingerprint, write_text

STATE_PATTERN = re.compile(r"^state_(\d{8})\.pt$")
log = logging.getLogger("ppcseg")


def input_fingerprints(**inputs: tuple[Iterable[Path], Path] | None) -> dict[str, str | None]:
    """{name: fingerprint of (paths, root)} for each input of a run; None for an input this run does not read."""
    return {name: None if spec is None else stat_fingerprint(*spec) for name, spec in inputs.items()}


def weights_input(weights: str | Path | None) -> tuple[list[Path], Path] | None:
    """The (paths, root) of a weights file for `input_fingerprints` (None: no file)."""
    return None if weights is None else ([Path(weights)], Path(weights).parent)


def same_run(saved: Any, current: Any) -> bool:
    """Whether two run identities are equal as JSON (tuples and lists alike, as they come back from a file)."""
    return json.dumps(saved, sort_keys=True) == json.dumps(current, sort_keys=True)


# Settings that change how a run executes but not what it computes: a state stays resumable when they change.
EXECUTION_ONLY: tuple[str, ...] = ("num_workers", "checkpoint_every")


class LossCurve:
    """The loss CSV of a run: `step,lr,<terms>`, one row a step, kept in memory (and in the states) and written whole.

    Every training stage logs the same way: row `step` (1-based) holds the lr and losses of the batch that produced
    optimiser update number `step`, computed before that update. Its first row is step 1 at the base lr, its last is
    max_steps, and the state saved after update `step` holds rows 1 to `step`.
    """

    def __init__(self, columns: list[str], rows: Iterable[str] = ()) -> None:
        self.columns = columns
        self.rows = list(rows)

    def append(self, step: int, lr: float, values: Iterable[float]) -> None:
        self.rows.append(",".join([str(step), f"{lr:.8g}", *(f"{v:.6g}" for v in values)]))

    def write(self, path: str | Path) -> None:
        write_text(path, "\n".join([",".join(self.columns), *self.rows]) + "\n")


class RunStates:
    """The state folder of one run: the newest state of the same identity is resumed, older ones are dropped.

    `keep_rng` saves and restores the global torch RNG (and the CUDA one on a GPU), for a stage whose dropout masks
    come from it; a stage that reseeds every step does not need it.
    """

    def __init__(
        self, state_dir: str | Path, identity: dict[str, Any], stage: str, device: torch.device, *, keep_rng: bool
    ) -> None:
        self.state_dir, self.identity, self.stage = Path(state_dir), identity, stage
        self.device, self.keep_rng = device, keep_rng

    def latest(self) -> dict[str, Any] | None:
        """The newest loadable state of this run; unreadable states are skipped, a foreign newest one means none."""
        if not self.state_dir.is_dir():
            return None
        names = sorted((p.name for p in self.state_dir.iterdir() if STATE_PATTERN.match(p.name)), reverse=True)
        for name in names:
            try:
                state = load_checkpoint(self.state_dir / name)
            except InputError as err:
                log.warning("%s: skipping state %s: %s", self.stage, name, err)
                continue
            if not same_run(state["meta"], self.identity):
                log.warning(
                    "%s: %s is a state of a run with other settings or inputs; starting from scratch",
                    self.stage,
                    self.state_dir / name,
                )
                return None
            return state
        return None

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer, total: int) -> tuple[int, list[str]]:
        """Load the latest state into `model` and `optimizer`: (steps done, loss rows so far); (0, []) if none."""
        state = self.latest()
        if state is None:
            return 0, []
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "rng" in state:
            torch.set_rng_state(state["rng"])
            if "cuda_rng" in state and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"])
        log.info("%s: resuming from %s at step %d of %d", self.stage, self.state_dir, state["step"], total)
        return int(state["step"]), list(state["loss_rows"])

    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, loss_rows: list[str]) -> None:
        """Write state_<step>.pt atomically (after `step` steps), then drop the older states."""
        state: dict[str, Any] = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "loss_rows": loss_rows,
        }
        if self.keep_rng:
            state["rng"] = torch.get_rng_state()
            if self.device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state()
        path = self.state_dir / f"state_{step:08d}.pt"
        save_checkpoint(path, state, self.identity)
        for old in self.state_dir.iterdir():
            if STATE_PATTERN.match(old.name) and old.name != path.name:
                old.unlink(missing_ok=True)
