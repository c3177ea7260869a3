"""The toolkit's error classes and the input validation shared by the library and the CLI.

Two kinds of failure, told apart by class, never by message:

- `UsageError` (a `ValueError`): bad usage or bad input, found before anything is written.
  The command line prints its one line and exits with code 2.
- `RunError` (a `RuntimeError`): a failure during a run (a non-finite number, a numerical
  routine that refused its input, a worker that died). The command line prints one line naming
  what failed and where the partial output is, and exits with code 1.

Any other exception escaping a command is a failure during a run too (exit 1). Only the
application layer (`stability.app`) maps these classes to exit codes.
"""

from __future__ import annotations

import math

import numpy as np


class UsageError(ValueError):
    """Bad command-line usage or bad input, detected before anything is written (exit 2)."""


class RunError(RuntimeError):
    """A failure during a run, after its inputs were accepted (exit 1).

    Parameters
    ----------
    message : str
        One line: what failed and, when known, where (iteration, lambda).
    out : str, optional
        The run folder holding the partial output, named in the command line's message.
    """

    def __init__(self, message: str, out=None):
        super().__init__(message)
        self.out = None if out is None else str(out)


def check_n(n, name: str = "n", minimum: int = 2) -> None:
    """Raise UsageError unless every n is a finite integer >= minimum."""
    arr = np.asarray(n, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{name} must be finite, got {n!r}")
    if np.any(arr != np.round(arr)):
        raise UsageError(f"{name} must be an integer, got {n!r}")
    if np.any(arr < minimum):
        raise UsageError(f"{name} must be >= {minimum}, got {n!r}")


def check_dim(d, name: str = "dim") -> None:
    """Raise UsageError unless d is an integer >= 1."""
    check_n(d, name=name, minimum=1)


def parse_lam(value) -> float:
    """Parse a mixing proportion lambda >= 0; 'inf' means fully synthetic (Algorithm 1)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"inf", "infinity", "+inf", "fully-synthetic", "replace"}:
            return math.inf
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"lambda must be a number >= 0 or 'inf', got {value!r}") from None
    value = float(value)
    if math.isnan(value) or value < 0:
        raise UsageError(f"lambda must be >= 0 or 'inf', got {value!r}")
    return value


def check_lam(lam, allow_inf: bool = True) -> float:
    """Validate lambda (number >= 0, or inf when allowed) and return it as float."""
    value = parse_lam(lam)
    if not allow_inf and math.isinf(value):
        raise UsageError("lambda must be finite here, got inf")
    return value


def check_finite(x, name: str = "data") -> np.ndarray:
    """Return x as a float array, raising UsageError if it holds NaN or inf."""
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise UsageError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return arr


def check_spd(a, name: str = "matrix", rtol: float = 1e-10) -> np.ndarray:
    """Return a as a symmetric positive definite float array of shape (d, d), or raise."""
    arr = check_finite(a, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise UsageError(f"{name} must be a square matrix, got shape {arr.shape}")
    scale = max(1.0, float(np.max(np.abs(arr))))
    if np.max(np.abs(arr - arr.T)) > rtol * scale:
        raise UsageError(f"{name} must be symmetric")
    eig = np.linalg.eigvalsh((arr + arr.T) / 2)
    if eig[0] <= 0:
        raise UsageError(f"{name} must be positive definite (smallest eigenvalue {eig[0]:.3g})")
    return (arr + arr.T) / 2
