"""Errors that the CLI turns into one clear message and a non-zero exit."""


class InputError(Exception):
    """Bad input: a missing or corrupt file, a wrong shape, an out-of-range value. The message names the file or key."""


class ParamsError(InputError):
    """params.yaml (or an overlay) is invalid. The message names the key."""
