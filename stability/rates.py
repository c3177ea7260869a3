"""The collapse rate alpha(n) of Proposition 1 and its multivariate version alpha_d(n).

Lemma A.1 (iii), eq (19): for a 1D Gaussian refit only on n of its own samples with the
unbiased variance estimator (eq 16), E[sigma_t] = alpha(n)^t sigma_0 with

    alpha(n) = E[chi_{n-1}] / sqrt(n - 1) = sqrt(2/(n-1)) Gamma(n/2) / Gamma((n-1)/2).

Lemma A.2 (iii), eq (35): alpha_d(n) = lambda_max(E[sqrt(S)]) / sqrt(n - 1) with
S ~ Wishart_d(n - 1, I). By rotation invariance E[sqrt(S)] = c I, so
alpha_d(n) = E[tr sqrt(S)] / (d sqrt(n - 1)).

Three independent computations are provided: the numeric one used everywhere (math.gamma below
x = 20, an exact-coefficient Stirling series above; stable for n up to 1e12 and beyond), a
symbolic one (sympy, from the chi density) and an arbitrary-precision one (mpmath) that the
checks use as ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from stability.errors import UsageError, check_dim, check_n

# Below this x = (n-1)/2 the Gamma ratio is evaluated directly; above it the asymptotic series
# of log(Gamma(x+1/2) / (Gamma(x) sqrt(x))) is used, whose terms shrink like x^-k: at x = 20 the
# first omitted term (k = 17) is below 1e-20.
_SERIES_FROM_X = 20.0
_SERIES_TERMS = 15


def _bernoulli(j: int) -> list[Fraction]:
    """Bernoulli numbers B_0..B_j, exact (Akiyama-Tanigawa; B_1 = +1/2, unused here).

    Exact rationals from the standard library, so that `stability alpha` does not import
    scipy.special (0.25 s of its 0.4 s start-up, through scipy's array-API layer).
    """
    out, row = [], []
    for m in range(j + 1):
        row.append(Fraction(1, m + 1))
        for i in range(m, 0, -1):
            row[i - 1] = i * (row[i - 1] - row[i])
        out.append(row[0])
    return out


def _log_ratio_coefficients(terms: int = _SERIES_TERMS) -> list[tuple[int, float]]:
    """Coefficients c_k of log(Gamma(x+1/2)/(Gamma(x) sqrt x)) = sum_k c_k x^-k (odd k).

    From the Stirling series log Gamma(x+a) ~ (x+a-1/2) log x - x + log(2 pi)/2
    + sum_k (-1)^(k+1) B_{k+1}(a) / (k (k+1) x^k) and B_j(1/2) = (2^(1-j) - 1) B_j.
    """
    bern = _bernoulli(terms + 2)
    coeffs = []
    for k in range(1, terms + 1, 2):
        c = (-1) ** (k + 1) * (Fraction(1, 2**k) - 2) * bern[k + 1] / (k * (k + 1))
        coeffs.append((k, float(c)))
    return coeffs


_COEFFS: list[tuple[int, float]] = []  # filled on first use


def log_alpha(n) -> np.ndarray | float:
    """log alpha(n) of eq (19), stable for any n >= 2 (use it for alpha(n)^t with large t).

    Parameters
    ----------
    n : int or array_like of int, shape (...)
        Number of samples per refit, n >= 2.
    """
    if not _COEFFS:
        _COEFFS.extend(_log_ratio_coefficients())
    n_arr = np.asarray(n, dtype=float)
    check_n(n_arr)
    x = (n_arr - 1.0) / 2.0
    out = np.empty_like(x)
    small = x < _SERIES_FROM_X
    xs = x[small]
    # Gamma(x + 1/2)/Gamma(x) has no overflow for x < 20: a direct ratio is exact to a few ulp.
    # math.gamma per distinct x (integer n gives at most 39 of them) keeps scipy unimported.
    uniq, where = np.unique(xs, return_inverse=True)
    ratio = np.array([math.gamma(v + 0.5) / math.gamma(v) for v in uniq.tolist()], dtype=float)
    out[small] = (np.log(ratio) - 0.5 * np.log(uniq))[where.reshape(xs.shape)]
    xl = x[~small]
    inv = 1.0 / xl
    acc = np.zeros_like(xl)
    for k, c in reversed(_COEFFS):
        acc = acc + c * inv**k
    out[~small] = acc
    return out if out.ndim else float(out)


def alpha(n) -> np.ndarray | float:
    """alpha(n) = E[chi_{n-1}]/sqrt(n-1) of Lemma A.1 (iii), eq (19); accurate to ~1e-16.

    Parameters
    ----------
    n : int or array_like of int, shape (...)
        Number of samples per refit, n >= 2.
    """
    return np.exp(log_alpha(n))


def one_minus_alpha(n) -> np.ndarray | float:
    """1 - alpha(n) without cancellation (about 1/(4(n-1)) for large n), eq (19).

    Parameters
    ----------
    n : int or array_like of int, shape (...)
    """
    return -np.expm1(log_alpha(n))


def alpha_mpmath(n: int, dps: int = 50):
    """alpha(n) in arbitrary precision (mpmath), the ground truth of the checks, eq (19)."""
    import mpmath

    check_n(n)
    with mpmath.workdps(dps):
        x = mpmath.mpf(int(n) - 1) / 2
        return mpmath.gamma(x + mpmath.mpf(1) / 2) / mpmath.gamma(x) / mpmath.sqrt(x)


def alpha_sympy():
    """alpha(n) derived symbolically: integrate r * chi_{n-1} density over (0, inf), eq (19).

    Returns
    -------
    (expr, n) : the sympy expression of alpha in the positive symbol n.
    """
    import sympy as sp

    r, k, n = sp.symbols("r k n", positive=True)
    chi_density = r ** (k - 1) * sp.exp(-(r**2) / 2) / (2 ** (k / 2 - 1) * sp.gamma(k / 2))
    mean_chi = sp.simplify(sp.integrate(r * chi_density, (r, 0, sp.oo)))
    expr = sp.simplify(mean_chi.subs(k, n - 1) / sp.sqrt(n - 1))
    return expr, n


@dataclass(frozen=True)
class AsymptoticExpansion:
    """alpha(n) = 1 + sum_j coefficients[j-1] / (n-1)^j + O((n-1)^-(order+1)), eq (19)."""

    coefficients: tuple  # sympy Rationals, in powers of 1/(n - 1)

    def __call__(self, n) -> np.ndarray:
        """Evaluate the truncated expansion at n, shape (...)."""
        m = np.asarray(n, dtype=float) - 1.0
        out = np.ones_like(m)
        for j, c in enumerate(self.coefficients, start=1):
            out = out + float(c) / m**j
        return out

    def __str__(self) -> str:
        terms = " ".join(
            f"{'+' if c >= 0 else '-'} ({abs(c)})(n-1)^-{j}"
            for j, c in enumerate(self.coefficients, start=1)
        )
        return f"alpha(n) = 1 {terms} + O((n-1)^-{len(self.coefficients) + 1})"


def alpha_asymptotic(order: int = 4) -> AsymptoticExpansion:
    """Asymptotic expansion of alpha(n) in 1/(n-1), derived with sympy from Stirling's series.

    Uses log alpha = loggamma(x + 1/2) - loggamma(x) - log(x)/2 with x = (n-1)/2 (eq 19).
    """
    import sympy as sp

    x, m = sp.symbols("x m", positive=True)
    log_ratio = sp.loggamma(x + sp.Rational(1, 2)) - sp.loggamma(x) - sp.log(x) / 2
    series = sp.series(log_ratio, x, sp.oo, order + 2).removeO()
    series = sp.nsimplify(sp.simplify(series))
    in_m = sp.series(sp.exp(series.subs(x, m / 2)), m, sp.oo, order + 1).removeO()
    poly = sp.expand(in_m.subs(m, 1 / sp.Symbol("u")))
    u = sp.Symbol("u")
    coeffs = tuple(sp.nsimplify(poly.coeff(u, j)) for j in range(1, order + 1))
    return AsymptoticExpansion(coeffs)


QUADRATURE_MAX_N = 10**6


def alpha_d_asymptotic(n, d: int):
    """Leading-order alpha_d(n) = 1 - (d+1)/(8(n-1)) + O(n^-2), from E[(S/m - I)^2] = (d+1)/m I.

    sqrt(S/m) = I + (S/m - I)/2 - (S/m - I)^2/8 + ..., and E[S^2] = m(m + d + 1) I for
    S ~ Wishart_d(m, I); for d = 1 it is the first term of alpha(n)'s expansion.

    Parameters
    ----------
    n : int or array_like, shape (...)
    """
    check_n(n)
    check_dim(d)
    return 1.0 - (d + 1) / (8.0 * (np.asarray(n, dtype=float) - 1.0))


def _check_quadrature_input(n: int, d: int) -> None:
    """UsageError unless alpha_d_quadrature covers (n, d): n - 1 >= d, d <= 3, n <= 1e6."""
    if n - 1 < d:
        raise UsageError(f"quadrature needs n - 1 >= d (got n={n}, d={d}); use Monte-Carlo")
    if d > 3:
        raise UsageError(f"quadrature is implemented for d <= 3 (got d={d}); use Monte-Carlo")
    if n > QUADRATURE_MAX_N:
        raise UsageError(
            f"quadrature is accurate for n <= {QUADRATURE_MAX_N:.0e} (got n={n}); use "
            "alpha_d_asymptotic"
        )


def _log_wishart_constant(m: int, d: int) -> float:
    """log of the normalising constant of the ordered Wishart_d(m, I) eigenvalue density.

    pi^(d^2/2) / (2^(md/2) Gamma_d(m/2) Gamma_d(d/2)) (Muirhead 1982, Thm 3.2.18).
    """
    from scipy import special

    return (
        (d * d / 2) * math.log(math.pi)
        - (m * d / 2) * math.log(2.0)
        - special.multigammaln(m / 2, d)
        - special.multigammaln(d / 2, d)
    )


# Tolerances of the 1D simplex integral (d = 2): relative only, since the integrand is rescaled
# to O(1) at its peak.
_QUAD_OPTS = dict(epsabs=0.0, epsrel=1e-12, limit=400)


def _simplex_integral_2d(p: float, with_root: bool) -> float:
    """Integral over the ordered 1-simplex, v in (1/2, 1), of the rescaled eigenvalue density.

    The integrand is (4 v (1 - v))^p (2v - 1), times sqrt(v) + sqrt(1 - v) when `with_root`
    (the trace of sqrt S on the simplex); the factor 4^p = d^(d p) keeps it O(1) for large p.
    """
    from scipy import integrate

    def root(v):
        return math.sqrt(v) + math.sqrt(1 - v) if with_root else 1.0

    if p < 0:  # (1 - v)^p is singular at v = 1: quad's algebraic weight takes it

        def f_weighted(v):
            return (4 * v) ** p * (2 * v - 1) * root(v)

        val, _ = integrate.quad(f_weighted, 0.5, 1.0, weight="alg", wvar=(0.0, p), **_QUAD_OPTS)
        return val

    def f(v):
        if v >= 1:
            return 0.0
        return math.exp(p * math.log(4 * v * (1 - v))) * (2 * v - 1) * root(v)

    # The mass sits within a few 1/sqrt(p) of v = 1/2: tell quad where.
    peak = 0.5 + min(0.25, 3 / math.sqrt(max(p, 1)))
    val, _ = integrate.quad(f, 0.5, 1.0, points=[peak], **_QUAD_OPTS)
    return val


def _simplex_integral_3d(p: float, with_root: bool) -> float:
    """Integral over the ordered 2-simplex v1 > v2 > v3 = 1 - v1 - v2 of the rescaled density.

    The integrand is (27 v1 v2 v3)^p prod_{i<j} (v_i - v_j), times sum_i sqrt(v_i) when
    `with_root`; 27^p = d^(d p) keeps it O(1) for large p.
    """
    from scipy import integrate

    def f(v2, v1):
        v3 = 1.0 - v1 - v2
        if v3 <= 0:
            return 0.0
        base = (27 * v1 * v2 * v3) ** p * (v1 - v2) * (v1 - v3) * (v2 - v3)
        return base * (math.sqrt(v1) + math.sqrt(v2) + math.sqrt(v3)) if with_root else base

    val, _ = integrate.dblquad(
        f,
        1 / 3,
        1.0,
        lambda v1: (1 - v1) / 2,
        lambda v1: min(v1, 1 - v1),
        epsabs=1e-14,
        epsrel=1e-11,
    )
    return val


@lru_cache(maxsize=256)
def alpha_d_quadrature(n: int, d: int, return_mass: bool = False):
    """alpha_d(n) = E[tr sqrt S]/(d sqrt(n-1)), S ~ Wishart_d(n-1, I), by quadrature (Lemma A.2 iii).

    Integrates sum_i sqrt(l_i) against the joint density of the ordered eigenvalues of a real
    Wishart matrix (Muirhead 1982, Thm 3.2.18), m = n - 1 >= d:
        f(l) = pi^(d^2/2) / (2^(md/2) Gamma_d(m/2) Gamma_d(d/2))
               prod_i l_i^((m-d-1)/2) e^(-l_i/2) prod_{i<j} (l_i - l_j),  l_1 > ... > l_d > 0.
    With l = s v (s = tr S, v on the simplex) the density factorises into a Gamma integral in s,
    done exactly, and a (d-1)-dimensional integral over the ordered simplex, done by adaptive
    quadrature: 1D for d = 2, 2D for d = 3 (larger d use Monte-Carlo).

    Parameters
    ----------
    n : int
        Points per refit, 2 <= n <= QUADRATURE_MAX_N (1e6), with n - 1 >= d.
    d : int
        Dimension, 1 <= d <= 3 (d = 1 is `alpha`, eq 19).
    return_mass : bool
        Also return the integral of the density (it must be 1: a test of the normalising
        constant and of the change of variables).

    Returns
    -------
    float, or (float, float) with `return_mass`
        alpha_d(n) of eq (35), and the density's mass.

    Raises
    ------
    UsageError
        For n < 2, d < 1, n - 1 < d, d > 3 or n > QUADRATURE_MAX_N.
    """
    from scipy import special

    check_n(n)
    check_dim(d)
    m = n - 1
    if d == 1:
        return (float(alpha(n)), 1.0) if return_mass else float(alpha(n))
    _check_quadrature_input(n, d)
    log_c = _log_wishart_constant(m, d)
    p = (m - d - 1) / 2
    # s-power of the density after l = s v: d p (powers) + d(d-1)/2 (Vandermonde) + d - 1
    # (Jacobian of l -> (s, v_1..v_{d-1})); int_0^inf s^k e^(-s/2) ds = 2^(k+1) Gamma(k+1).
    k0 = d * p + d * (d - 1) / 2 + d - 1
    log_gamma_part = (k0 + 1) * math.log(2.0) + special.gammaln(k0 + 1)
    # prod v_i^p peaks at the centre of the simplex, where it is d^(-d p): the integrands are
    # rescaled by d^(d p) so that they stay O(1) for large n (p ~ n/2) instead of underflowing.
    log_rescale = d * p * math.log(d)
    simplex = _simplex_integral_2d if d == 2 else _simplex_integral_3d
    v0, v1 = simplex(p, False), simplex(p, True)
    mass = math.exp(log_c + log_gamma_part - log_rescale + math.log(v0))
    # E[sum sqrt(l_i)] as a ratio of the two integrals: the constant C cancels, and so do
    # correlated quadrature errors of the simplex part.
    # Gamma(k0 + 3/2)/Gamma(k0 + 1) through log_alpha, which keeps full precision for large k0.
    log_ratio = 0.5 * math.log(2.0) + 0.5 * math.log(k0 + 1) + float(log_alpha(2 * k0 + 3))
    mean_trace_root = math.exp(log_ratio) * v1 / v0
    value = mean_trace_root / (d * math.sqrt(m))
    return (value, mass) if return_mass else value


def sqrt_scatter_samples(d: int, n: int, runs: int, rng: np.random.Generator) -> np.ndarray:
    """Draw square roots of Gaussian scatter matrices, S^(1/2) with S ~ Wishart_d(n - 1, I).

    S = sum_i (z_i - z_bar)(z_i - z_bar)^T for n standard normal points z_i in R^d, the
    scatter matrix of Lemma A.2 (iii), eq (35); E[tr S^(1/2)] / (d sqrt(n - 1)) is alpha_d(n).

    Parameters
    ----------
    d : int
        Dimension.
    n : int
        Points per draw (S has n - 1 degrees of freedom).
    runs : int
        Number of independent draws.
    rng : numpy.random.Generator
        Source of the normal draws.

    Returns
    -------
    numpy.ndarray, shape (runs, d, d)
        The symmetric positive semi-definite square roots.
    """
    from stability.linalg import sqrtm_psd

    z = rng.standard_normal((runs, n, d))
    zc = z - z.mean(axis=1, keepdims=True)
    return sqrtm_psd(np.einsum("rni,rnj->rij", zc, zc))
