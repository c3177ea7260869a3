"""Von Mises family on the circle, theta = (mu, kappa), kappa > 0."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from stability.errors import UsageError
from stability.families.base import Family, data_points


def bessel_ratio(kappa: float) -> float:
    """A(kappa) = I_1(kappa)/I_0(kappa), computed with exponentially scaled Bessel functions."""
    return float(special.i1e(kappa) / special.i0e(kappa))


class VonMisesFamily(Family):
    """log p = kappa cos(x - mu) - log(2 pi I_0(kappa)) for angles x, theta = (mu, kappa).

    Derivatives in closed form, with u = x - mu and A = I_1/I_0:
    score = (kappa sin u, cos u - A(kappa));
    Hessian = [[-kappa cos u, sin u], [sin u, -A'(kappa)]], A' = 1 - A/kappa - A^2.
    d/dx Hessian = [[kappa sin u, cos u], [cos u, 0]], so L = max over u of its spectral norm
    (x on the circle with arc length; W1 is taken on the circle).
    """

    param_names = ("mu", "kappa")
    derivatives = "given"
    circular = True
    name = "von-mises"

    def logpdf(self, x, theta):
        """log p(x; mu, kappa) = kappa cos(x - mu) - log(2 pi I_0(kappa)), shape (N,)."""
        mu, kappa = float(theta[0]), float(theta[1])
        log_norm = math.log(2 * math.pi) + math.log(special.i0e(kappa)) + kappa
        return kappa * np.cos(data_points(x) - mu) - log_norm

    def score(self, x, theta):
        """(kappa sin(x - mu), cos(x - mu) - A(kappa)), A = I_1/I_0; shape (N, 2)."""
        mu, kappa = float(theta[0]), float(theta[1])
        u = data_points(x) - mu
        return np.stack([kappa * np.sin(u), np.cos(u) - bessel_ratio(kappa)], axis=1)

    def hessian(self, x, theta):
        """[[-kappa cos u, sin u], [sin u, -A'(kappa)]], shape (N, 2, 2).

        u = x - mu, A = I_1 / I_0, A' = 1 - A / kappa - A^2.
        """
        mu, kappa = float(theta[0]), float(theta[1])
        u = data_points(x) - mu
        a = bessel_ratio(kappa)
        h = np.empty((u.size, 2, 2))
        h[:, 0, 0] = -kappa * np.cos(u)
        h[:, 0, 1] = h[:, 1, 0] = np.sin(u)
        h[:, 1, 1] = -(1.0 - a / kappa - a * a)
        return h

    def hessian_dx(self, x, theta):
        """d/dx of the Hessian, [[kappa sin u, cos u], [cos u, 0]], shape (N, 2, 2)."""
        mu, kappa = float(theta[0]), float(theta[1])
        u = data_points(x) - mu
        h = np.zeros((u.size, 2, 2))
        h[:, 0, 0] = kappa * np.sin(u)
        h[:, 0, 1] = h[:, 1, 0] = np.cos(u)
        return h

    def lipschitz_window(self, theta):
        """One turn of the circle, (mu - pi, mu + pi)."""
        return float(theta[0]) - math.pi, float(theta[0]) + math.pi

    def valid(self, theta) -> bool:
        """True when theta is finite and kappa > 0."""
        return bool(np.all(np.isfinite(theta)) and theta[1] > 0)

    def nodes(self, theta):
        """The trapezoid rule on the circle: spectrally accurate for periodic integrands."""
        mu, kappa = float(theta[0]), float(theta[1])
        m = max(512, int(64 * math.sqrt(kappa)))
        x = mu - math.pi + 2 * math.pi * np.arange(m) / m
        logw = kappa * (np.cos(x - mu) - 1.0)
        w = np.exp(logw)
        return x[:, None], w / w.sum()

    def sample(self, rng, n, theta):
        """n draws of von Mises(mu, kappa), shape (n, 1)."""
        return rng.vonmises(float(theta[0]), float(theta[1]), size=n)[:, None]

    def cdf(self, x, theta):
        """CDF on R of the distribution supported on [mu - pi, mu + pi]."""
        return np.clip(stats.vonmises.cdf(x, float(theta[1]), loc=float(theta[0])), 0.0, 1.0)

    def check_data(self, x, w) -> None:
        """Also refuses data with no mean direction or all at one angle.

        Their kappa maximiser would be 0 (mu not identified) or inf.
        """
        super().check_data(x, w)
        resultant = abs(complex(w @ np.exp(1j * x[:, 0]))) / w.sum()
        if resultant < 1e-8:
            raise UsageError(
                "the data have no mean direction (resultant length 0): kappa's maximiser is 0 "
                "and mu is not identified"
            )
        if resultant > 1 - 1e-12:
            raise UsageError("the data sit at one angle: kappa's maximiser is inf")

    def initial_guess(self, data) -> np.ndarray:
        """The data's mean direction and kappa from the Best-Fisher inverse of A(kappa) = R."""
        x, w = data.nodes()
        z = complex(w @ np.exp(1j * x[:, 0])) / w.sum()
        r = min(abs(z), 0.999)
        # Best-Fisher approximation of the inverse of A(kappa) = r.
        kappa = r * (2 - r * r) / (1 - r * r)
        return np.array([math.atan2(z.imag, z.real), kappa])

    def describe(self) -> str:
        """The family and its parameters, in words."""
        return "von Mises on the circle, theta = (mu, kappa)"
