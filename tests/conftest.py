"""Shared test setup: keep torch to few threads (the CI machine has 2 cores)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
