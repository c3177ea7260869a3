"""The paper's Gaussian model on points, as a model plugin (``--model gaussian``)."""

from __future__ import annotations

import numpy as np

from simulations.gaussian import GaussianModel


class Gaussian(GaussianModel):
    """A Gaussian fitted by its mean and covariance, batched over runs (eqs 4-5).

    Parameters
    ----------
    ddof : int
        1 for the unbiased covariance of eq (5), 0 for maximum likelihood (eq 2).

    On points: fit on x of shape (R, N, d); state {"mu": (R, d), "cov": (R, d, d)}.
    """

    def __init__(self, ddof: int = 1):
        super().__init__("sample", int(ddof))

    def metrics(self, heldout) -> dict:
        """mean_x1, the first coordinate of the mean (R,), and trace_cov, tr Sigma_t (R,)."""
        return {"mean_x1": self.mu[:, 0], "trace_cov": np.trace(self.cov, axis1=1, axis2=2)}
