"""Shared test setup: few torch threads (the CI machine has 2 cores) and the one uninterrupted demo run."""

import os
import time

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One uninterrupted demo run through Snakemake in a scratch copy: (repo, completed process)."""
    from tests.timing import HANG_GUARD_S
    from tests.workflow.helpers import DEMO, scratch_repo, snakemake

    repo = scratch_repo(tmp_path_factory.mktemp("demo"))
    start = time.monotonic()
    proc = snakemake(repo, "--cores", "2", *DEMO, timeout=HANG_GUARD_S)
    print(f"demo pipeline: {time.monotonic() - start:.0f} s")
    return repo, proc
