"""A model plugin written outside the package: a Gaussian kernel density estimate.

Run it with `stability simulate model --model examples/plugins/my_kde.py:KDE --out runs/my_kde`,
or sweep it with `stability sweep examples/sweeps/kde_file_plugin.toml` (from the repository
root). The toolkit needs three methods, batched over R independent runs:

    fit(data)         data.x has shape (R, N, d)
    sample(k, rng)    returns an array (R, k, d)
    state()           a dict of arrays with one row per run, the parameters theta_t
"""

import numpy as np


class KDE:
    """Each run's points plus Gaussian noise of standard deviation `bandwidth`."""

    def __init__(self, bandwidth=0.3):
        self.h = float(bandwidth)

    def fit(self, data):
        self.points = np.array(data.x, dtype=float)  # (R, N, d)

    def sample(self, k, rng):
        runs, n, d = self.points.shape
        idx = rng.integers(0, n, size=(runs, k))
        centres = np.take_along_axis(self.points, idx[:, :, None], axis=1)
        return centres + self.h * rng.standard_normal((runs, k, d))

    def state(self):
        # The KDE's mean and total variance: the points' (divisor N) plus the kernel's h^2 d.
        return {
            "mean": self.points.mean(axis=1),
            "variance": self.points.var(axis=1).sum(axis=1) + self.h**2 * self.points.shape[2],
        }
