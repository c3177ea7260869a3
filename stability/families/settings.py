"""The default (family, data) pairs on which the operator checks and `--model` run."""

from __future__ import annotations

import numpy as np

from stability.families.data import GaussianData, GaussianMixture1D
from stability.families.gaussian import GaussianFamily
from stability.families.means_mixture import MeansMixtureFamily
from stability.families.student_t import StudentTFamily
from stability.linalg import random_spd

# A skewed bimodal p_data that no family contains, so eps = W1(p_theta*, p_data) > 0 (the
# misspecified case of Theorem 1).
SKEWED_DATA = GaussianMixture1D(weights=(0.7, 0.3), means=(-0.5, 1.5), sds=(0.6, 0.8))

NEAR_MIXTURE_DATA = GaussianMixture1D(weights=(0.5, 0.5), means=(-1.0, 1.2), sds=(0.75, 0.66))


def default_settings():
    """The (name, family, data) triples on which the operator checks run."""
    rng = np.random.default_rng(20240101)
    cov2 = random_spd(2, 4.0, rng)
    return [
        ("gaussian-2d", GaussianFamily(2), GaussianData(np.array([0.5, -1.0]), cov2)),
        ("gaussian-1d", GaussianFamily(1), SKEWED_DATA),
        ("student-t", StudentTFamily(4.0), SKEWED_DATA),
        ("mixture", MeansMixtureFamily(0.7), SKEWED_DATA),
        # A nonlinear family inside Proposition 3's hypothesis: the data are almost in it
        # (component widths 0.75 and 0.66 vs the model's 0.7), eps L = 0.27 < alpha = 0.58.
        ("mixture-near", MeansMixtureFamily(0.7), NEAR_MIXTURE_DATA),
    ]
