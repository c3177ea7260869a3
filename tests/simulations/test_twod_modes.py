"""Mode statistics of 2D samples (the collapse measure of Figure 3) against independent sums."""

import math

import numpy as np

from simulations.data import sample_8gaussians
from simulations.twod_modes import has_modes, mode_metrics, mode_statistics
from stability.stats import binomial_interval, mean_interval

SIGMA = 0.1**0.25  # torchcfm passes var = 0.1 through sqrt as the covariance
CENTRES = np.array(
    [[5 * math.cos(k * math.pi / 4), 5 * math.sin(k * math.pi / 4)] for k in range(8)]
)


def _quadrature_nearest_centre_variance(step: float = 0.02) -> float:
    """E ||x - c(x)||^2 / 2 for the 8-gaussians mixture, c(x) the nearest centre, by a Riemann
    sum of the mixture density on a grid (a deterministic computation, no sampling)."""
    g = np.arange(-9, 9, step) + step / 2
    x, y = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([x.ravel(), y.ravel()], axis=1)
    density = np.zeros(len(pts))
    nearest = np.full(len(pts), np.inf)
    for c in CENTRES:
        d2 = ((pts - c) ** 2).sum(1)
        density += np.exp(-d2 / (2 * SIGMA**2)) / (2 * math.pi * SIGMA**2) / 8
        nearest = np.minimum(nearest, d2)
    mass = density.sum() * step**2
    assert abs(mass - 1) < 1e-6  # the grid holds the whole mixture
    return float((density * nearest).sum() * step**2 / 2)


def test_mode_statistics_of_the_data_against_quadrature_and_binomial_intervals():
    n = 200_000
    x = sample_8gaussians(n, np.random.default_rng(7))
    weights, spreads = mode_statistics(x[None], CENTRES)
    # weights: each mode's share inside its 99.9% Clopper-Pearson interval (8 comparisons)
    counts = np.rint(weights[0] * n).astype(int)
    assert counts.sum() == n
    for k in range(8):
        assert binomial_interval(counts[k], n, 0.999, 8).contains(1 / 8)
    # spreads: brute-force nearest distance per sample, pooled, against the quadrature value
    d2 = np.min(((x[:, None, :] - CENTRES[None]) ** 2).sum(-1), axis=1) / 2
    assert np.isclose((weights[0] * spreads[0] ** 2).sum(), d2.mean(), rtol=1e-12)
    exact = _quadrature_nearest_centre_variance()
    assert mean_interval(d2, 0.999).contains(exact)
    # the nearest-centre assignment cuts the tails only slightly: exact / sigma^2 just below 1
    assert 0.99 < exact / SIGMA**2 < 1.0
    m = mode_metrics(x[None], "8gaussians")
    assert m["mode_weight_tv"][0] < 0.01
    assert abs(m["mode_spread_ratio"][0] - math.sqrt(exact) / SIGMA) < 0.005


def test_collapsed_samples_give_the_hand_computed_values():
    # run 0: every sample on centre 2 (weights (0, 0, 1, 0...)): TV = 7/8, spread 0;
    # run 1: half on centre 0 at distance 0.3 along x, half on centre 4 exactly.
    a = np.repeat(CENTRES[2][None], 10, axis=0)
    b = np.concatenate(
        [np.repeat(CENTRES[0][None] + [0.3, 0], 5, 0), np.repeat(CENTRES[4][None], 5, 0)]
    )
    weights, spreads = mode_statistics(np.stack([a, b]), CENTRES)
    assert np.array_equal(weights[0], np.eye(8)[2])
    assert np.isnan(spreads[0, 0]) and spreads[0, 2] == 0
    assert np.isclose(spreads[1, 0], 0.3 / math.sqrt(2)) and spreads[1, 4] == 0
    m = mode_metrics(np.stack([a, b]), "8gaussians")
    assert np.allclose(m["mode_weight_tv"], [7 / 8, 0.5 * (2 * 3 / 8 + 6 / 8)])
    assert np.allclose(m["mode_spread_ratio"], [0.0, 0.3 / math.sqrt(2) / 2 / SIGMA])


def test_only_the_gaussian_mixtures_have_modes():
    assert has_modes("8gaussians") and has_modes("8gaussians-ffjord")
    assert not has_modes("moons") and not has_modes("gaussian")
