"""Shared pytest configuration: hypothesis profiles and helpers.

HYPOTHESIS_PROFILE=ci (default): derandomised, no deadline, few examples (fast, reproducible).
HYPOTHESIS_PROFILE=thorough: many random examples, for a local deep run.
"""

import os
import subprocess
import sys

# Under pytest-xdist every worker is one process per core: give each one BLAS/OpenMP thread so
# that `-n auto` does not oversubscribe the cores (torch, numpy and numba read these variables
# when they are first imported, which happens after this file is loaded). Results do not depend
# on thread counts; only the time does.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def run_cli(*args, env=None, timeout=600):
    """Run `python -m stability ARGS` and return the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "stability", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def cli():
    return run_cli
