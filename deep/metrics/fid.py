"""Frechet Inception Distance from feature statistics (Heusel et al. 2017, Eq. 6).

FID is the squared Frechet (2-Wasserstein) distance between the Gaussians fitted to two
feature sets, computed in float64 with the conventions of pytorch-fid / clean-fid, so that
numbers from the same features agree with theirs.

Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter (2017), "GANs Trained by a Two Time-Scale
Update Rule Converge to a Local Nash Equilibrium", NeurIPS.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import scipy.linalg

from deep.metrics.validate import check_features, check_same_dim
from stability.errors import RunError, UsageError

__all__ = ["feature_stats", "fid_from_features", "frechet_distance"]

IMAG_ATOL = 1e-3  # pytorch-fid's tolerance on the imaginary part of diag(sqrtm(S1 S2))

_SQRTM_DISP_DEFAULT_TRUE = (
    inspect.signature(scipy.linalg.sqrtm).parameters.get("disp", None) is not None
    and inspect.signature(scipy.linalg.sqrtm).parameters["disp"].default is True
)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a feature set, in float64: the Gaussian of FID's Eq. (6).

    Parameters
    ----------
    features : np.ndarray, shape (N, D), N >= 2

    Returns
    -------
    mu : np.ndarray, shape (D,)
    sigma : np.ndarray, shape (D, D)
        The unbiased sample covariance (ddof = 1), ``np.cov(features, rowvar=False)``.

    Raises
    ------
    UsageError
        If `features` is not of shape (N, D) with N >= 2.
    RunError
        If it holds non-finite values.
    """
    x = check_features(features, "features", minimum=2)
    mu = x.mean(axis=0)
    sigma = np.atleast_2d(np.cov(x, rowvar=False))
    return mu, sigma


def _sqrtm(a: np.ndarray) -> np.ndarray:
    # scipy >= 1.16 deprecates `disp` (gone in 1.18) and warns on singular input instead of
    # printing; older versions print unless disp=False. The callers test finiteness themselves.
    kwargs = {"disp": False} if _SQRTM_DISP_DEFAULT_TRUE else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = scipy.linalg.sqrtm(a, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def _checked_gaussians(mu1, sigma1, mu2, sigma2):
    """The four arrays in float64 with matching shapes (UsageError) and finite (RunError)."""
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise UsageError(f"means must both have shape (D,), got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise UsageError(
            f"covariances must have shape ({d}, {d}), got {sigma1.shape} and {sigma2.shape}"
        )
    # Statistics come from features computed during the run: NaN there is a run failure.
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise RunError(f"FID: {name} has non-finite values")
    return mu1, sigma1, mu2, sigma2


def _sqrt_of_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> np.ndarray:
    """Real sqrtm(sigma1 @ sigma2) (D, D) with pytorch-fid's retry and refusal rules."""
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"sqrtm(sigma1 @ sigma2) is not finite (singular product); adding {eps:g} to the "
            "diagonal of both covariances",
            RuntimeWarning,
            stacklevel=3,
        )
        offset = np.eye(len(sigma1)) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise RunError(f"FID: sqrtm(sigma1 @ sigma2) is not finite even with eps = {eps:g}")
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAG_ATOL):
            worst = float(np.max(np.abs(covmean.imag)))
            raise RunError(
                f"FID: sqrtm(sigma1 @ sigma2) has an imaginary component of {worst:.3g} "
                "(are the covariances positive semi-definite?)"
            )
        covmean = covmean.real
    return covmean


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2): FID's Eq. (6).

    d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))
    (Heusel et al. 2017, Eq. 6), in float64, with the conventions of pytorch-fid / clean-fid:
    the matrix square root is ``scipy.linalg.sqrtm(sigma1 @ sigma2)``; if it is not finite (a
    singular product), eps * I is added to both covariances for the square root only, with a
    RuntimeWarning; if it is complex, it is refused when an imaginary part on its diagonal
    exceeds 1e-3 in absolute value and its real part is used otherwise (round-off on nearly
    singular products).

    Parameters
    ----------
    mu1, mu2 : array_like, shape (D,)
        The means.
    sigma1, sigma2 : array_like, shape (D, D)
        The covariance matrices (symmetric positive semi-definite).
    eps : float
        Diagonal offset of the retry, >= 0.

    Returns
    -------
    float
        d^2 (FID is the squared distance: 100 between N(0, 1) and N(10, 1)).

    Raises
    ------
    UsageError
        On mismatched shapes or a bad `eps`.
    RunError
        On non-finite statistics, or a square root that is not finite even with eps or has a
        large imaginary part (the covariances are not positive semi-definite).
    """
    mu1, sigma1, mu2, sigma2 = _checked_gaussians(mu1, sigma1, mu2, sigma2)
    if not (eps >= 0 and np.isfinite(eps)):
        raise UsageError(f"eps must be a finite number >= 0, got {eps!r}")
    diff = mu1 - mu2
    covmean = _sqrt_of_product(sigma1, sigma2, eps)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(real: np.ndarray, generated: np.ndarray) -> float:
    """FID (Heusel et al. 2017, Eq. 6) between two feature sets.

    ``frechet_distance`` of the means and unbiased covariances (``feature_stats``).

    Parameters
    ----------
    real : np.ndarray, shape (N, D), N >= 2
    generated : np.ndarray, shape (M, D), M >= 2

    Returns
    -------
    float
        The FID.

    Raises
    ------
    UsageError
        On bad shapes, too few points or different dimensions D.
    RunError
        On non-finite features or a refused matrix square root (see ``frechet_distance``).
    """
    real = check_features(real, "real features", minimum=2)
    generated = check_features(generated, "generated features", minimum=2)
    check_same_dim(real, generated)
    return frechet_distance(*feature_stats(real), *feature_stats(generated))
