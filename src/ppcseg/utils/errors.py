"""Errors that the CLI turns into one clear message and a non-zero exit."""

import math


class InputError(Exception):
    """Bad input: a missing or corrupt file, a wrong shape, an out-of-range value. The message names the file or key."""


class ParamsError(InputError):
    """params.yaml (or an overlay) is invalid. The message names the key."""


def refuse_non_finite_loss(step: int, terms: dict[str, float], total: str) -> None:
    """Stop training at the first step (1-based) whose loss is NaN or infinite, naming the term that went first.

    Training on would write a checkpoint of NaN weights that looks complete; the error would surface stages later.
    """
    bad = [name for name, value in terms.items() if not math.isfinite(value)]
    if bad:
        name = next((n for n in bad if n != total), total)  # the term that caused it, not the sum
        raise InputError(
            f"loss term '{name}' is {terms[name]} at step {step}; stopped without writing a checkpoint "
            "(check the learning rate and the other params of the run)"
        )
