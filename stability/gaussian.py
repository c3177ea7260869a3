"""The Gaussian family of Proposition 2 and its retraining operator in closed form.

theta = (mu, P) with P = Sigma^-1 (the paper's parametrisation). The log-density (eq 58)

    log p_theta(x) = 1/2 log det P - 1/2 (x - mu)^T P (x - mu) - d/2 log(2 pi)

has gradient (mu-block) P (x - mu) and (P-block) 1/2 P^-1 - 1/2 (x - mu)(x - mu)^T, and Hessian
blocks -P, (x - mu)^T (x) I_d and -1/2 P^-1 (x) P^-1 on symmetric directions of P. In the
"full" coordinates (all d^2 entries of P free) the mixed block is ((x - mu)^T (x) I_d)(I + K)/2
and the P-block -1/2 K (P^-1 (x) P^-1), K the commutation matrix: the same bilinear form on
symmetric directions, but indefinite on antisymmetric ones. The coordinates of P ("full", "svec", "vech") are described in stability.linalg.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from stability.errors import UsageError, check_lam, check_spd
from stability.linalg import duplication_matrix, inv_spd, smat, sqrtm_psd, svec, svec_basis, sym
from stability.loop import synthetic_count

COORDS = ("full", "svec", "vech")


def _basis(d: int, coords: str) -> np.ndarray:
    """Matrix whose columns are vec(B_k) for the coordinate basis of P, shape (d^2, p_P)."""
    if coords == "full":
        return np.eye(d * d)
    if coords == "svec":
        return np.array([b.reshape(-1, order="F") for b in svec_basis(d)]).T
    if coords == "vech":
        return duplication_matrix(d)
    raise UsageError(f"unknown coordinates {coords!r}; choose one of {', '.join(COORDS)}")


def n_params(d: int, coords: str = "svec") -> int:
    """Number of coordinates of theta = (mu, P) in the given convention."""
    return d + _basis(d, coords).shape[1]


def score(x: np.ndarray, mu: np.ndarray, prec: np.ndarray, coords: str = "full") -> np.ndarray:
    """Gradient of log N(x; mu, P^-1) in theta = (mu, P), eq (59) (correct form, see checks).

    Parameters
    ----------
    x : array, shape (N, d)
    mu : array, shape (d,)
    prec : array, shape (d, d), the precision P = Sigma^-1 (SPD)
    coords : coordinates of P: "full", "svec" or "vech"

    Returns
    -------
    array, shape (N, d + p_P)
    """
    x = np.atleast_2d(x)
    d = mu.shape[0]
    v = x - mu
    g_mu = v @ prec.T
    g_p_full = 0.5 * inv_spd(prec)[None] - 0.5 * np.einsum("ni,nj->nij", v, v)
    g_p = g_p_full.reshape(len(x), d * d, order="F") @ _basis(d, coords)
    return np.concatenate([g_mu, g_p], axis=1)


def hessian(x: np.ndarray, mu: np.ndarray, prec: np.ndarray, coords: str = "full") -> np.ndarray:
    """Hessian of log N(x; mu, P^-1) in theta = (mu, P), eq (60) up to sign.

    Parameters
    ----------
    x : array, shape (N, d)
    mu : array, shape (d,)
    prec : array, shape (d, d)
    coords : coordinates of P: "full", "svec" or "vech"

    Returns
    -------
    array, shape (N, d + p_P, d + p_P)
    """
    x = np.atleast_2d(x)
    d = mu.shape[0]
    basis = _basis(d, coords)
    pp = basis.shape[1]
    sigma = inv_spd(prec)
    v = x - mu
    out = np.zeros((len(x), d + pp, d + pp))
    out[:, :d, :d] = -prec
    # d/dvec(P) of P v is v^T (x) I_d (column-major vec): the mixed block, linear in x.
    # cross[n, i, j*d + k] = d(P v)_i / dP_kj = delta_ik v_j; P_kj sits at k + j*d in vec(P).
    cross = np.einsum("nj,ik->nijk", v, np.eye(d)).reshape(len(x), d, d * d)
    # The density only sees sym(P) through v^T P v, so with d^2 free entries the mu-gradient is
    # sym(P) v and the mixed block picks up (I + K)/2; on symmetric directions K acts as I.
    sym_proj = 0.5 * (np.eye(d * d) + commutation_matrix(d))
    out[:, :d, d:] = cross @ sym_proj @ basis
    out[:, d:, :d] = np.swapaxes(out[:, :d, d:], 1, 2)
    # d vec(P^-T)/d vec(P) = -K (Sigma (x) Sigma): the commutation matrix K matters only off
    # the symmetric subspace, i.e. in "full" coordinates (where it makes the block indefinite).
    out[:, d:, d:] = basis.T @ (-0.5 * commutation_matrix(d) @ np.kron(sigma, sigma)) @ basis
    return out


def commutation_matrix(d: int) -> np.ndarray:
    """K with K vec(A) = vec(A^T) for d x d matrices A (column-major vec), shape (d^2, d^2)."""
    k = np.zeros((d * d, d * d))
    for i in range(d):
        for j in range(d):
            k[i + j * d, j + i * d] = 1.0
    return k


def expected_hessian(
    mu: np.ndarray, prec: np.ndarray, mean: np.ndarray, coords: str = "svec"
) -> np.ndarray:
    """E_x[Hessian] for any distribution of x with mean `mean` (the Hessian is affine in x).

    Parameters
    ----------
    mu : array, shape (d,)
    prec : array, shape (d, d)
    mean : array, shape (d,), mean of the distribution of x

    Returns
    -------
    array, shape (p, p); at theta* it is A of Lemma E.1, with Assumption 2's alpha = -lambda_max.
    """
    return hessian(np.asarray(mean)[None], mu, prec, coords)[0]


def assumption2_alpha(prec: np.ndarray) -> float:
    """alpha of Assumption 2 at theta* in full or svec coordinates: min(lmin(P), lmin(Sigma)^2/2)."""
    sig = np.linalg.eigvalsh(inv_spd(prec))
    return float(min(np.linalg.eigvalsh(prec)[0], 0.5 * sig[0] ** 2))


def lipschitz_constant(d: int, coords: str) -> float:
    """Analytic Lipschitz constant of x -> Hessian (Euclidean norm on x, spectral on matrices).

    Only the mixed block M(x - mu) depends on x, linearly, so L = max_{|u|=1} ||M(u)||_2 with
    M(u) M(u)^T = |u|^2 I in "full", (|u|^2 I + u u^T)/2 in "svec", and
    |u|^2 I + u u^T - diag(u^2) in "vech", whose top eigenvalue over unit u is 2 - 1/d
    (attained at u = (1, ..., 1)/sqrt d).
    """
    if coords in ("full", "svec"):
        return 1.0
    if coords == "vech":
        return math.sqrt(2.0 - 1.0 / d)
    raise UsageError(f"unknown coordinates {coords!r}; choose one of {', '.join(COORDS)}")


def lipschitz_measured(d: int, coords: str, rng: np.random.Generator, starts: int = 20) -> float:
    """Largest ||H(x + u) - H(x)||_2 over unit u found by local maximisation from random starts."""
    from scipy.optimize import minimize

    mu = np.zeros(d)
    prec = np.eye(d)
    x0 = rng.standard_normal((1, d))
    h0 = hessian(x0, mu, prec, coords)[0]

    def neg(u):
        u = u / np.linalg.norm(u)
        return -np.linalg.norm(hessian(x0 + u, mu, prec, coords)[0] - h0, 2)

    best = 0.0
    for _ in range(starts):
        res = minimize(neg, rng.standard_normal(d), method="Nelder-Mead", options={"xatol": 1e-10})
        best = max(best, -res.fun)
    ones = np.ones(d) / math.sqrt(d)
    return max(best, -neg(ones))


# --------------------------------------------------------------------------------------------
# theta <-> (mu, Sigma) in svec coordinates, used by the operator and the Theorem 2 check


def to_theta(mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """theta = (mu, svec(Sigma^-1)), shape (..., d) and (..., d, d) -> (..., d + d(d+1)/2)."""
    return np.concatenate([mu, svec(inv_spd(cov))], axis=-1)


def from_theta(theta: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of to_theta: returns (mu, Sigma), shapes (..., d) and (..., d, d)."""
    mu = theta[..., :d]
    prec = smat(theta[..., d:])
    return mu, inv_spd(prec)


# --------------------------------------------------------------------------------------------
# The retraining operator, eqs (2), (3) and (9), for the Gaussian family


def g_inf(
    mu: np.ndarray, cov: np.ndarray, lam: float, data_mean: np.ndarray, data_cov: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """G_lambda^inf (eq 9) in closed form: the Gaussian MLE of the mixture of p_data and p_theta.

    The maximiser of E_data[log p] + lam E_theta[log p] matches the first two moments of
    (p_data + lam p_theta)/(1 + lam); only the mean and covariance of p_data matter.

    Parameters
    ----------
    mu, data_mean : arrays, shape (..., d)
    cov, data_cov : arrays, shape (..., d, d)
    lam : float >= 0 or inf (inf returns (mu, cov): every theta is a fixed point)
    """
    lam = check_lam(lam)
    if math.isinf(lam):
        return mu.copy(), cov.copy()
    w = lam / (1.0 + lam)
    new_mu = (1.0 - w) * data_mean + w * mu
    diff = data_mean - mu
    new_cov = (
        (1.0 - w) * data_cov + w * cov + w * (1.0 - w) * np.einsum("...i,...j->...ij", diff, diff)
    )
    return new_mu, sym(new_cov)


def g_n(
    mu: np.ndarray,
    cov: np.ndarray,
    lam: float,
    real: np.ndarray,
    rng: np.random.Generator,
    ddof: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One finite-sample step G_lambda^n (eqs 2-3): refit on real data plus floor(lam n) samples.

    The Gaussian log-likelihood has a unique maximiser (the sample mean and covariance), so the
    tie-break of eq (3) is not needed. ddof=0 is the maximum-likelihood covariance of eq (2);
    ddof=1 is the unbiased estimator of eq (5). lam = inf refits on n model samples only.

    Parameters
    ----------
    mu : array, shape (d,)
    cov : array, shape (d, d)
    real : array, shape (n, d), the fixed real data set
    """
    lam = check_lam(lam)
    n, d = real.shape
    k = synthetic_count(lam, n)
    synth = mu + rng.standard_normal((k, d)) @ sqrtm_psd(cov)
    data = synth if math.isinf(lam) else np.concatenate([real, synth], axis=0)
    new_mu = data.mean(axis=0)
    centred = data - new_mu
    new_cov = centred.T @ centred / (len(data) - ddof)
    return new_mu, sym(new_cov)


def g_inf_theta(
    theta: np.ndarray, lam: float, data_mean: np.ndarray, data_cov: np.ndarray
) -> np.ndarray:
    """G_lambda^inf in theta = (mu, svec(P)) coordinates, shape (p,) -> (p,)."""
    d = data_mean.shape[0]
    mu, cov = from_theta(theta, d)
    new_mu, new_cov = g_inf(mu, cov, lam, data_mean, data_cov)
    return to_theta(new_mu, new_cov)


def jacobian_at_optimum(lam: float, d: int) -> np.ndarray:
    """Exact Jacobian of G_lambda^inf at theta* in (mu, svec P): lam/(1+lam) times identity.

    At theta* = (mean, cov of p_data) the moment-matching map is linear to first order with slope
    lam/(1 + lam) in mu and in Sigma, and P = Sigma^-1 has the same slope at a fixed point.
    """
    lam = check_lam(lam, allow_inf=False)
    return lam / (1.0 + lam) * np.eye(n_params(d, "svec"))


@cache
def _sympy_derivatives(d: int, coords: str, param: str):
    """Gradient and Hessian of log N(x; theta) derived symbolically (sympy), lambdified.

    param = "precision" differentiates in theta = (mu, P) and param = "covariance" in
    theta = (mu, Sigma); coords picks the coordinates of the matrix.
    Returns (grad_fn, hess_fn), each called as f(x (d,), mu (d,), matrix (d, d)).
    """
    import sympy as sp

    xs = sp.symbols(f"x0:{d}")
    mus = sp.symbols(f"m0:{d}")
    if coords == "full":
        entries = sp.symbols(f"a0:{d * d}")
        mat = sp.Matrix(d, d, lambda i, j: entries[i + j * d])  # column-major, like vec
        coord_syms = list(entries)
    elif coords in ("vech", "svec"):
        coord_syms = []
        mat = sp.zeros(d, d)
        for j in range(d):
            for i in range(j, d):
                c = sp.Symbol(f"c{i}_{j}")
                coord_syms.append(c)
                if i == j:
                    mat[i, i] = c
                elif coords == "vech":
                    mat[i, j] = mat[j, i] = c
                else:
                    mat[i, j] = mat[j, i] = c / sp.sqrt(2)
    else:
        raise UsageError(f"unknown coordinates {coords!r}")
    v = sp.Matrix([xs[i] - mus[i] for i in range(d)])
    if param == "precision":
        logp = sp.log(mat.det()) / 2 - (v.T * mat * v)[0, 0] / 2
    elif param == "covariance":
        logp = -sp.log(mat.det()) / 2 - (v.T * mat.inv() * v)[0, 0] / 2
    else:
        raise UsageError(f"unknown parametrisation {param!r}")
    theta = list(mus) + coord_syms
    grad = [sp.diff(logp, t) for t in theta]
    hess = [[sp.diff(g, t) for t in theta] for g in grad]
    args = list(xs) + list(mus) + coord_syms
    grad_f = sp.lambdify(args, grad, "numpy")
    hess_f = sp.lambdify(args, hess, "numpy")

    def coords_of(matrix: np.ndarray) -> list[float]:
        if coords == "full":
            return list(np.asarray(matrix).reshape(-1, order="F"))
        if coords == "vech":
            return [matrix[i, j] for j in range(d) for i in range(j, d)]
        return list(svec(np.asarray(matrix)))

    def grad_fn(x, mu, matrix):
        return np.array(grad_f(*x, *mu, *coords_of(matrix)), dtype=float)

    def hess_fn(x, mu, matrix):
        return np.array(hess_f(*x, *mu, *coords_of(matrix)), dtype=float)

    return grad_fn, hess_fn


def sympy_score_hessian(d: int, coords: str = "full", param: str = "precision"):
    """Symbolic (sympy) gradient and Hessian of the Gaussian log-density, as numpy callables."""
    return _sympy_derivatives(d, coords, param)


def paper_eq59_gradient(x: np.ndarray, mu: np.ndarray, prec: np.ndarray) -> np.ndarray:
    """Eq (59) exactly as printed, negated back to grad log p: (Sigma^-1 (x - mu), Sigma - vv^T/2).

    Shapes: x (d,), mu (d,), prec (d, d); returns (d + d^2,) in full (vec) coordinates.
    """
    sigma = inv_spd(prec)
    v = x - mu
    minus_grad_mat = 0.5 * np.outer(v, v) - sigma
    return np.concatenate([prec @ v, -minus_grad_mat.reshape(-1, order="F")])


def paper_eq60_hessian(x: np.ndarray, mu: np.ndarray, prec: np.ndarray) -> np.ndarray:
    """Eq (60) exactly as printed, negated back to Hessian of log p, shape (d + d^2, d + d^2).

    Blocks: [[Sigma^-1, (mu - x) (x) I_d], [I_d (x) (mu - x), (Sigma (x) Sigma)/2]] for -Hessian,
    with the upper-right block read as a d x d^2 matrix (the transpose of the printed column).
    """
    d = mu.shape[0]
    sigma = inv_spd(prec)
    u = (mu - x).reshape(d, 1)
    upper_right = np.kron(u, np.eye(d)).T  # (mu - x) (x) I_d, printed as d^2 x d
    lower_left = np.kron(np.eye(d), u)  # I_d (x) (mu - x), d^2 x d
    minus_h = np.block([[prec, upper_right], [lower_left, 0.5 * np.kron(sigma, sigma)]])
    return -minus_h


def random_precision(d: int, rng: np.random.Generator, cond: float = 10.0) -> np.ndarray:
    """A random SPD precision matrix (see stability.linalg.random_spd), shape (d, d)."""
    from stability.linalg import random_spd

    return check_spd(random_spd(d, cond, rng), "precision")


def g_n_batch(
    mu: np.ndarray,
    cov: np.ndarray,
    lam: float,
    real: np.ndarray,
    rng: np.random.Generator,
    ddof: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """G_lambda^n (eqs 2-3) for R independent runs at once; see g_n.

    Parameters
    ----------
    mu : array, shape (R, d)
    cov : array, shape (R, d, d)
    real : array, shape (R, n, d), each run's fixed real data set
    """
    lam = check_lam(lam)
    r, n, d = real.shape
    k = synthetic_count(lam, n)
    # A symmetric square root instead of Cholesky: fully synthetic runs collapse to numerically
    # singular covariances, where Cholesky fails but x = mu + sqrt(Sigma) z is still defined.
    root = sqrtm_psd(cov)
    synth = mu[:, None, :] + np.einsum("rkj,rij->rki", rng.standard_normal((r, k, d)), root)
    data = synth if math.isinf(lam) else np.concatenate([real, synth], axis=1)
    new_mu = data.mean(axis=1)
    centred = data - new_mu[:, None, :]
    new_cov = np.einsum("rki,rkj->rij", centred, centred) / (data.shape[1] - ddof)
    return new_mu, sym(new_cov)
