"""Mode statistics of 2D samples: the collapse that Figure 3 of the paper shows, in numbers.

Each sample is assigned to the nearest mode centre of the data (``8gaussians``: the centres
5 (cos k pi/4, sin k pi/4) of ``simulations.data``). Per run:

- mode weights w_k, the share of samples nearest centre k (the data's: 1/K each);
- ``mode_weight_tv``, the total variation 1/2 sum_k |w_k - 1/K| (0 for balanced modes, 1 - 1/K
  when every sample falls on one mode);
- per-mode spread s_k = sqrt(mean over the samples of mode k of ||x - c_k||^2 / d), the standard
  deviation of a mode's samples around its centre (the data's: the noise standard deviation
  0.1^(1/4) = 0.562 of torchcfm's 8 gaussians, up to the few samples nearer a neighbour);
- ``mode_spread_ratio``, the mean of s_k over the modes that hold samples divided by the data's
  noise standard deviation (1 for the data; < 1 when samples collapse toward the centres, as the
  paper describes for fully synthetic retraining).
"""

from __future__ import annotations

import numpy as np

from simulations.data import mode_centres_and_spread

MODE_METRICS = ("mode_weight_tv", "mode_spread_ratio")


def has_modes(data: str) -> bool:
    """Whether the data set has mode centres (the 8-gaussians data sets)."""
    return mode_centres_and_spread(data) is not None


def mode_statistics(samples: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-run, per-mode weights and spreads of samples assigned to their nearest centre.

    Parameters
    ----------
    samples : ndarray, shape (R, N, d)
    centres : ndarray, shape (K, d)

    Returns
    -------
    weights : ndarray, shape (R, K)
        Share of each run's samples nearest each centre (rows sum to 1).
    spreads : ndarray, shape (R, K)
        sqrt(mean ||x - c_k||^2 / d) over the samples of mode k; NaN for an empty mode.
    """
    x = np.asarray(samples, dtype=np.float64)
    r, n, d = x.shape
    k = len(centres)
    sq = ((x[:, :, None, :] - centres[None, None]) ** 2).sum(-1)  # (R, N, K)
    nearest = sq.argmin(-1)
    dist2 = np.take_along_axis(sq, nearest[..., None], -1)[..., 0]
    counts = np.zeros((r, k))
    sums = np.zeros((r, k))
    for i in range(r):
        counts[i] = np.bincount(nearest[i], minlength=k)
        sums[i] = np.bincount(nearest[i], weights=dist2[i], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        spreads = np.sqrt(sums / counts / d)
    return counts / n, spreads


def mode_metrics(samples: np.ndarray, data: str) -> dict[str, np.ndarray]:
    """``mode_weight_tv`` and ``mode_spread_ratio`` per run (see the module docstring).

    Parameters
    ----------
    samples : ndarray, shape (R, N, 2)
    data : str
        A data set with mode centres (``has_modes(data)``).

    Returns
    -------
    dict of str to ndarray, shape (R,)
    """
    centres, spread = mode_centres_and_spread(data)
    weights, spreads = mode_statistics(samples, centres)
    tv = 0.5 * np.abs(weights - 1.0 / len(centres)).sum(1)
    return {"mode_weight_tv": tv, "mode_spread_ratio": np.nanmean(spreads, axis=1) / spread}
