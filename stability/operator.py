"""The retraining operator G_lambda (eqs 2, 3, 9) for any family, and its Jacobian (Lemma E.1).

G_lambda^inf(theta) maximises H(theta, theta') = E_data[log p_theta'] + lam E_theta[log p_theta']
(eq 9). Expectations are quadratures, the maximisation is Newton's method started at theta
(a local search: it returns the local maximiser reached from theta, the tie-break of eq 3).
G_lambda^n(theta) is the same maximisation on the empirical measure of n real points and
floor(lam n) samples of p_theta (eq 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stability.errors import UsageError, check_lam
from stability.families.quadrature import w1_circle, w1_integers, w1_line, wrapped_cdf
from stability.loop import synthetic_count


class NotConverged(RuntimeError):
    """Newton's method did not reach the requested gradient tolerance."""


class EpsNotComputable(UsageError):
    """eps = W1(p_theta*, p_data) is not computed for this (family, data) pair."""


def maximise(
    family,
    theta0: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    tol: float = 1e-11,
    max_iter: int = 200,
) -> np.ndarray:
    """Local maximiser of f(theta') = sum_i w_i log p_theta'(x_i) reached from theta0 (eq 2-3).

    Newton's method with backtracking; where the Hessian is not negative definite the step uses
    its eigenvalues' absolute values (a saddle-free Newton step), so it only climbs.

    Parameters
    ----------
    theta0 : array, shape (p,)
    x : array, shape (N, dim), quadrature nodes or data points
    w : array, shape (N,), non-negative weights
    """
    theta = np.array(theta0, dtype=float)
    wsum = float(np.sum(w))
    w = w / wsum

    def value(t):
        return float(w @ family.logpdf(x, t))

    f = value(theta)
    for _ in range(max_iter):
        g = w @ family.score(x, theta)
        if np.linalg.norm(g) <= tol * (1.0 + np.linalg.norm(theta)):
            return theta
        h = np.einsum("n,nij->ij", w, family.hessian(x, theta))
        evals, evecs = np.linalg.eigh(0.5 * (h + h.T))
        evals = np.maximum(np.abs(evals), 1e-12 * max(1.0, np.abs(evals).max()))
        step = evecs @ ((evecs.T @ g) / evals)
        t = 1.0
        while t > 1e-12:
            cand = theta + t * step
            if family.valid(cand):
                fc = value(cand)
                if fc >= f - 1e-15 * abs(f):
                    break
            t *= 0.5
        else:
            break
        theta, f = cand, fc
    g = w @ family.score(x, theta)
    if np.linalg.norm(g) > 1e3 * tol * (1.0 + np.linalg.norm(theta)):
        raise NotConverged(f"gradient norm {np.linalg.norm(g):.3g} at theta={theta}")
    return theta


@dataclass
class Operator:
    """G_lambda for one (family, data) pair, with the constants of Theorem 1 at theta*.

    Parameters
    ----------
    family : a family (`stability.families.Family` or an object with the same methods)
    data : a data source (`stability.datasources` protocol)
    name : str, a label
    """

    family: object
    data: object
    name: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    # ---- the maps -------------------------------------------------------------------------
    def theta_star(self) -> np.ndarray:
        """theta* = argmax E_data[log p_theta] (eq 7), shape (p,).

        Raises UsageError (bad input, found before anything is written) when the data are
        outside the family's support, when the maximisation does not converge (no maximiser:
        the likelihood is unbounded or its supremum is at the boundary), or when the point
        reached is not a strict local maximum (A not negative definite).
        """
        if "theta_star" not in self._cache:
            x, w = self.data.nodes()
            x = np.asarray(x, dtype=float)
            if not np.all(np.isfinite(x)) or not np.all(np.isfinite(w)):
                raise UsageError(f"the data {self.data_name} hold non-finite values")
            if getattr(self.family, "discrete", False) and not getattr(
                self.data, "discrete", False
            ):
                raise UsageError(
                    f"family {self.family.name} is discrete: give discrete data (a scipy discrete "
                    "distribution such as poisson:mu=3 or bernoulli:p=0.3, or integer samples)"
                )
            if hasattr(self.family, "check_data"):
                self.family.check_data(x, w)
            start = np.asarray(self.family.initial_guess(self.data), dtype=float)
            try:
                theta = maximise(self.family, start, x, w, tol=1e-13)
            except NotConverged as exc:
                raise UsageError(
                    f"no maximiser of E_data[log p_theta] for {self.family.name} on "
                    f"{self.data_name}: Newton's method from {np.round(start, 4).tolist()} "
                    f"did not converge ({exc})"
                ) from None
            self._cache["theta_star"] = theta
            top = float(np.linalg.eigvalsh(0.5 * (self.A() + self.A().T))[-1])
            if not top < 0:
                del self._cache["theta_star"]
                raise UsageError(
                    f"theta* = {np.round(theta, 6).tolist()} is not a strict maximum of "
                    f"E_data[log p_theta] for {self.family.name} on {self.data_name} (largest "
                    f"eigenvalue of A = {top:.3g}): Assumption 2 fails"
                )
        return self._cache["theta_star"]

    @property
    def data_name(self) -> str:
        """The data source's name, for messages and tables."""
        return str(getattr(self.data, "name", "the data"))

    def g_inf(self, theta: np.ndarray, lam: float, start: np.ndarray | None = None) -> np.ndarray:
        """G_lambda^inf(theta) of eq (9): local maximiser reached from `start` (default theta)."""
        lam = check_lam(lam, allow_inf=False)
        xd, wd = self.data.nodes()
        xm, wm = self.family.nodes(theta)
        x = np.concatenate([xd, xm])
        w = np.concatenate([wd, lam * wm])
        return maximise(self.family, theta if start is None else start, x, w, tol=1e-13)

    def g_n(
        self, theta: np.ndarray, lam: float, real: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One finite-sample step G_lambda^n(theta) (eq 2): real (n, dim) plus floor(lam n) samples."""
        lam = check_lam(lam)
        n = real.shape[0]
        k = synthetic_count(lam, n)
        synth = self.family.sample(rng, k, theta)
        x = synth if math.isinf(lam) else np.concatenate([real, synth])
        return maximise(self.family, theta, x, np.ones(len(x)), tol=1e-10)

    # ---- second derivatives of H at theta* (Lemma E.1) ---------------------------------------
    def A(self) -> np.ndarray:
        """A = Hessian of H_1 at theta* = E_data[Hessian log p_theta*] (Lemma E.1), shape (p, p)."""
        x, w = self.data.nodes()
        return np.einsum("n,nij->ij", w, self.family.hessian(x, self.theta_star()))

    def H22(self, theta: np.ndarray | None = None, theta_p: np.ndarray | None = None) -> np.ndarray:
        """Hessian of H_2(theta, .) in theta' = E_theta[Hessian log p_theta'(x)], shape (p, p)."""
        theta = self.theta_star() if theta is None else theta
        theta_p = theta if theta_p is None else theta_p
        x, w = self.family.nodes(theta)
        return np.einsum("n,nij->ij", w, self.family.hessian(x, theta_p))

    def H2_mixed(
        self, theta: np.ndarray | None = None, theta_p: np.ndarray | None = None
    ) -> np.ndarray:
        """d^2 H_2 / dtheta' dtheta = E_theta[score_theta'(x) score_theta(x)^T] (eq 88), (p, p).

        Row index theta', column index theta (the orientation of eq 83).
        """
        theta = self.theta_star() if theta is None else theta
        theta_p = theta if theta_p is None else theta_p
        x, w = self.family.nodes(theta)
        return np.einsum(
            "n,ni,nj->ij", w, self.family.score(x, theta_p), self.family.score(x, theta)
        )

    # ---- the Jacobian three ways -------------------------------------------------------------
    def jacobian_fd(
        self, lam: float, theta: np.ndarray | None = None, h: float = 1e-5
    ) -> np.ndarray:
        """Jacobian of G_lambda^inf by central finite differences of the map itself, (p, p)."""
        theta = self.theta_star() if theta is None else np.asarray(theta, dtype=float)
        p = theta.size
        jac = np.empty((p, p))
        base = self.g_inf(theta, lam)
        for j in range(p):
            step = h * max(1.0, abs(theta[j]))
            e = np.zeros(p)
            e[j] = step
            plus = self.g_inf(theta + e, lam, start=base)
            minus = self.g_inf(theta - e, lam, start=base)
            jac[:, j] = (plus - minus) / (2 * step)
        return jac

    def jacobian_implicit(self, lam: float, theta: np.ndarray | None = None) -> np.ndarray:
        """Jacobian by implicit differentiation of grad_theta' H(theta, G(theta)) = 0, eq (76)."""
        theta = self.theta_star() if theta is None else np.asarray(theta, dtype=float)
        g = self.g_inf(theta, lam)
        xd, wd = self.data.nodes()
        h1 = np.einsum("n,nij->ij", wd, self.family.hessian(xd, g))
        h22 = self.H22(theta, g)
        mixed = self.H2_mixed(theta, g)
        return -lam * np.linalg.solve(h1 + lam * h22, mixed)

    def jacobian_formula(self, lam: float, b: str = "hessian") -> np.ndarray:
        """Jacobian at theta* by eq (78): (I + lam A^-1 B)^-1 lam A^-1 B.

        b = "mixed" uses B = d^2 H_2/dtheta dtheta' as Lemma E.1 defines it; b = "hessian" uses
        B = d^2 H_2/dtheta'^2, the matrix that eq (100) actually integrates.
        """
        B = self.H2_mixed() if b == "mixed" else self.H22()
        m = np.linalg.solve(self.A(), B)
        p = m.shape[0]
        return np.linalg.solve(np.eye(p) + lam * m, lam * m)

    # ---- constants of Theorem 1 ---------------------------------------------------------------
    def alpha(self) -> float:
        """alpha of Assumption 2: -lambda_max(A)."""
        return float(-np.linalg.eigvalsh(0.5 * (self.A() + self.A().T))[-1])

    def lipschitz(self) -> float:
        """L of Assumption 1 at theta*."""
        if "L" not in self._cache:
            self._cache["L"] = float(self.family.lipschitz(self.theta_star()))
        return self._cache["L"]

    def eps(self) -> float:
        """eps = W1(p_theta*, p_data) (eq 8); 0 when the family contains p_data (Gaussian data).

        In 1D from the two CDFs: on the line, on the integers (discrete families) or on the
        circle (circular families). Raises EpsNotComputable (a UsageError) otherwise.
        """
        if "eps" not in self._cache:
            self._cache["eps"] = float(self._eps())
        return self._cache["eps"]

    def eps_or_none(self) -> float | None:
        """eps, or None where it is not computed (multivariate misspecified data)."""
        try:
            return self.eps()
        except EpsNotComputable:
            return None

    def _eps(self) -> float:
        from stability.families.data import GaussianData
        from stability.families.gaussian import GaussianFamily

        fam, data = self.family, self.data
        if isinstance(fam, GaussianFamily) and isinstance(data, GaussianData):
            return 0.0  # well-specified: p_theta* = p_data exactly
        if getattr(fam, "dim", 1) != 1 or getattr(data, "dim", 1) != 1:
            raise EpsNotComputable(
                "eps is computed for 1D data (or Gaussian data fitted by the Gaussian family)"
            )
        ts = self.theta_star()
        if not getattr(data, "has_mean", lambda: True)():
            return math.inf  # E|x| = inf under p_data: W1 to a model with a mean is infinite
        try:
            fam.cdf(np.array([0.0]), ts)
            data.cdf(np.array([0.0]))
        except NotImplementedError as exc:
            raise EpsNotComputable(f"eps needs both CDFs: {exc}") from None
        xd, wd = data.nodes()
        xm, wm = fam.nodes(ts)
        lo = float(min(_bulk(xd, wd)[0], _bulk(xm, wm)[0]))
        hi = float(max(_bulk(xd, wd)[1], _bulk(xm, wm)[1]))
        if getattr(fam, "discrete", False):
            return w1_integers(
                lambda k: fam.cdf(k, ts), data.cdf, math.floor(lo) - 1, math.ceil(hi) + 1
            )
        if getattr(fam, "circular", False):
            start = float(ts[0]) - math.pi
            return w1_circle(
                wrapped_cdf(lambda t: fam.cdf(t, ts), start), wrapped_cdf(data.cdf, start), start
            )
        jumps = data.jumps() if hasattr(data, "jumps") else None
        q1, med, q3 = _quantiles(xd, wd, (0.25, 0.5, 0.75))
        scale = max(q3 - q1, 1e-9 * max(1.0, abs(med))) / 20
        return w1_line(lambda t: fam.cdf(t, ts), data.cdf, lo, hi, jumps, med, scale)

    # ---- the spectrum of the Jacobian at theta* (Lemma E.1 with B~) ----------------------------
    def B_tilde(self) -> np.ndarray:
        """B~ = Hessian in theta' of H_2 at (theta*, theta*) = E_theta*[Hessian], (p, p).

        The matrix that makes eq (78) true (Lemma E.1 prints the mixed derivative instead).
        """
        return self.H22()

    def mu(self) -> np.ndarray:
        """Eigenvalues of A^-1 B~, shape (p,), sorted by real part.

        At a strict maximum with positive definite Fisher information they are real and > 0
        (A^-1 B~ is similar to the symmetric positive definite (-A)^-1/2 (-B~) (-A)^-1/2).
        """
        vals = np.linalg.eigvals(np.linalg.solve(self.A(), self.B_tilde()))
        vals = vals[np.argsort(vals.real)]
        return vals.real if np.allclose(vals.imag, 0, atol=1e-12) else vals

    def jacobian_eigenvalues(self, lam: float) -> np.ndarray:
        """Eigenvalues of J G_lambda(theta*) = (I + lam M)^-1 lam M: lam mu / (1 + lam mu)."""
        mu = self.mu()
        return lam * mu / (1 + lam * mu)

    def theorem1_bound(self, lam: float) -> float:
        """Right-hand side of eq (11): lam (alpha + eps L) / (alpha - lam (alpha + eps L))."""
        a, c = self.alpha(), self.alpha() + self.eps() * self.lipschitz()
        denom = a - lam * c
        return lam * c / denom if denom > 0 else math.inf

    def theorem1_lambda_max(self) -> float:
        """Largest lambda allowed by Theorem 1's condition lam (1 + L eps / alpha) < 1/2."""
        return 0.5 / (1.0 + self.lipschitz() * self.eps() / self.alpha())

    def spectral_lambda_max(self) -> float:
        """Largest lambda with spectral radius of (I + lam M)^-1 lam M below 1, M = A^-1 B.

        Each eigenvalue mu of M maps to lam mu / (1 + lam mu), of modulus < 1 iff
        Re(lam mu) > -1/2; eigenvalues with Re(mu) >= 0 never limit lambda.
        """
        m = np.linalg.solve(self.A(), self.H22())
        mus = np.linalg.eigvals(m)
        neg = [-0.5 / mu.real for mu in mus if mu.real < 0]
        return float(min(neg)) if neg else math.inf


def _quantiles(x: np.ndarray, w: np.ndarray, qs) -> list[float]:
    """Weighted quantiles of 1D nodes x (N, 1) with weights w (N,)."""
    xs = np.asarray(x, dtype=float).reshape(-1)
    order = np.argsort(xs)
    cum = np.cumsum(np.asarray(w)[order])
    cum /= cum[-1]
    return [float(xs[order][min(np.searchsorted(cum, q), xs.size - 1)]) for q in qs]


def _bulk(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Range of the 1D nodes x (N, 1) that carry weight (N,) above 1e-18 of the largest."""
    keep = np.asarray(x, dtype=float).reshape(-1)[np.asarray(w) > 1e-18 * np.max(w)]
    return float(keep.min()), float(keep.max())


def default_operators() -> list[Operator]:
    """Operators for the default (family, data) pairs of stability.families."""
    from stability.families import default_settings

    return [Operator(fam, data, name) for name, fam, data in default_settings()]
