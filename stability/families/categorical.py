"""Categorical family on {0, ..., K-1} with softmax logits (Bernoulli for K = 2)."""

from __future__ import annotations

import numpy as np
from scipy import special

from stability.errors import UsageError
from stability.families.base import Family, data_points


class CategoricalFamily(Family):
    """P(x = k) = softmax(0, theta_1, ..., theta_{K-1})_k, theta = logits against class 0.

    Class 0's logit is fixed at 0 so that theta is identifiable (with all K logits free the
    Hessian is singular along (1, ..., 1) and alpha of Assumption 2 would be 0). With
    p = softmax: score = e_x - p (classes 1..K-1) and Hessian = -(diag(p) - p p^T), the same
    for every x: L = 0, A = B~ for any data, and G_lambda's Jacobian at theta* is
    lambda/(1 + lambda) I. K = 2 is the Bernoulli family with theta = logit P(x = 1).

    Parameters
    ----------
    k : int >= 2
        Number of classes.
    """

    derivatives = "given"
    discrete = True

    def __init__(self, k: int = 2):
        if int(k) != k or k < 2:
            raise UsageError(f"a categorical family needs k >= 2 classes, got {k!r}")
        self.k = int(k)
        self.name = "bernoulli" if self.k == 2 else f"categorical(k={self.k})"
        self.param_names = (
            ("logit",) if self.k == 2 else tuple(f"logit{j}" for j in range(1, self.k))
        )

    def probs(self, theta) -> np.ndarray:
        """Class probabilities, shape (K,)."""
        logits = np.concatenate([[0.0], np.asarray(theta, dtype=float)])
        return np.exp(logits - special.logsumexp(logits))

    def _labels(self, x) -> np.ndarray:
        return np.rint(data_points(x)).astype(int)

    def logpdf(self, x, theta):
        """log p(j; eta) = eta_j - log sum_i exp(eta_i), eta_0 = 0, shape (N,)."""
        logits = np.concatenate([[0.0], np.asarray(theta, dtype=float)])
        return logits[self._labels(x)] - special.logsumexp(logits)

    def score(self, x, theta):
        """d/deta_i log p(j) = 1[j = i] - p_i for i = 1..K-1, shape (N, K - 1)."""
        p = self.probs(theta)
        onehot = np.eye(self.k)[self._labels(x)]
        return (onehot - p)[:, 1:]

    def hessian(self, x, theta):
        """-(diag(q) - q q^T), q = (p_1..p_{K-1}), the same at every x; (N, K - 1, K - 1)."""
        q = self.probs(theta)[1:]
        h = -(np.diag(q) - np.outer(q, q))
        return np.broadcast_to(h, (self._labels(x).size, self.k - 1, self.k - 1)).copy()

    def lipschitz(self, theta) -> float:
        """L = 0: the Hessian does not depend on x."""
        return 0.0

    def nodes(self, theta):
        """The labels 0..K-1 (K, 1) and their probabilities (K,)."""
        return np.arange(self.k, dtype=float)[:, None], self.probs(theta)

    def sample(self, rng, n, theta):
        """n labels drawn with the probabilities softmax(0, eta), as floats; (n, 1)."""
        return rng.choice(self.k, size=n, p=self.probs(theta)).astype(float)[:, None]

    def cdf(self, x, theta):
        """P(J <= floor(x)) = sum_{j <= x} p_j."""
        cum = np.cumsum(self.probs(theta))
        i = np.floor(np.asarray(x, dtype=float)).astype(int)
        return np.where(i < 0, 0.0, cum[np.clip(i, 0, self.k - 1)])

    def check_data(self, x, w) -> None:
        """Also refuses labels outside 0..K-1 and classes absent from the data (logit -> -inf)."""
        super().check_data(x, w)
        labels = x[:, 0]
        if np.any(labels != np.round(labels)) or np.any(labels < 0) or np.any(labels >= self.k):
            raise UsageError(
                f"{self.name} needs labels in 0..{self.k - 1} (e.g. bernoulli:p=0.3, "
                f"binom:n={self.k - 1},p=0.4, categorical:p=[...])"
            )
        freq = np.bincount(np.rint(labels).astype(int), weights=w, minlength=self.k)
        missing = [j for j in range(self.k) if freq[j] <= 0]
        if missing:
            raise UsageError(
                f"class(es) {missing} never occur in the data: their logit's maximiser is -inf"
            )

    def initial_guess(self, data) -> np.ndarray:
        """The maximum-likelihood logits log(freq_j / freq_0), j = 1..K-1."""
        x, w = data.nodes()
        freq = np.bincount(np.rint(x[:, 0]).astype(int), weights=w, minlength=self.k)
        freq = np.maximum(freq[: self.k], 1e-12)
        return np.log(freq[1:] / freq[0])

    def describe(self) -> str:
        """Bernoulli or categorical, and the logit parametrisation, in words."""
        if self.k == 2:
            return "Bernoulli on {0, 1}, theta = logit P(x = 1)"
        return f"categorical on 0..{self.k - 1}, theta = logits of classes 1..{self.k - 1} vs 0"
