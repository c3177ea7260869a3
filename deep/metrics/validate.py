"""Checks shared by the metrics: a feature set is a finite float64 array of shape (N, D).

A wrong type, shape or size is bad input (``UsageError``); non-finite values are a failure of
whatever produced the features during the run (``RunError``): the command line never takes
features as input, only images, so NaN features come from a network that diverged.
"""

from __future__ import annotations

import numpy as np

from stability.errors import RunError, UsageError


def check_features(x, name: str, minimum: int = 1) -> np.ndarray:
    """`x` as a float64 array of shape (N, D) with N >= `minimum` finite rows.

    Parameters
    ----------
    x : array_like, shape (N, D)
        The features.
    name : str
        What they are, for the error message.
    minimum : int
        The fewest points accepted.

    Returns
    -------
    np.ndarray, shape (N, D), float64
        `x` itself when it is already a float64 array, a converted copy otherwise.

    Raises
    ------
    UsageError
        If `x` is not an array of shape (N, D) or has fewer than `minimum` rows.
    RunError
        If `x` holds NaN or inf.
    """
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        x = np.asarray(x, dtype=np.float64)
    else:
        raise UsageError(f"{name} must be an array of shape (N, D), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] < 1:
        raise UsageError(f"{name} must have shape (N, D), got {x.shape}")
    if len(x) < minimum:
        raise UsageError(f"{name}: need at least {minimum} points, got {len(x)}")
    if not np.isfinite(x).all():
        raise RunError(f"{name} has non-finite values")
    return x


def check_same_dim(real: np.ndarray, generated: np.ndarray) -> None:
    """Raise UsageError unless real (N, D) and generated (M, D) features share D."""
    if real.shape[1] != generated.shape[1]:
        raise UsageError(
            "real and generated features differ in dimension: "
            f"{real.shape[1]} vs {generated.shape[1]}"
        )


def check_positive_int(value, name: str) -> int:
    """`value` as an int, or UsageError unless it is an integer >= 1 (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
