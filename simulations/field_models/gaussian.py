"""The paper's Gaussian model on points, as a model plugin (``--model gaussian``)."""

from __future__ import annotations

from simulations.gaussian import GaussianModel


def Gaussian(ddof: int = 1) -> GaussianModel:
    """A Gaussian fitted by its mean and covariance, batched over runs (eqs 4-5).

    Parameters
    ----------
    ddof : int
        1 for the unbiased covariance of eq (5), 0 for maximum likelihood (eq 2).

    Returns
    -------
    simulations.gaussian.GaussianModel
        On points (engine "sample"): fit on x of shape (R, N, d), state {"mu": (R, d),
        "cov": (R, d, d)}.
    """
    return GaussianModel("sample", int(ddof))
