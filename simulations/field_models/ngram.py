"""Categorical and bigram models of tokens by counts, batched over runs (Suresh et al. 2024,
"Rate of model collapse in recursive training").

Data are token sequences, integers in [0, K), shape (R, N, L) (L = 1: single symbols). The
model is fitted by (smoothed) counts:

- order 1: every token independent with p_i = (c_i + a) / (C + K a), c_i the count of symbol i
  over all positions (a = 0: maximum likelihood);
- order 2: the first token by its own counts, each next token by the bigram counts of the
  previous one, P_ij = (c_ij + a) / (c_i. + K a); a context never followed by anything falls
  back to the unigram distribution.

With a = 0 and fully synthetic retraining, order 1 is the Wright-Fisher chain: p_t is a
martingale, a symbol that disappears never returns, and the Gini-Simpson index
G = 1 - sum_i p_i^2 decays exactly as E[G_t] = (1 - 1/M)^t G_0 for M tokens per refit. The
model's metrics are its support (symbols or transitions of positive probability), entropy,
Gini-Simpson index and total variation to the held-out tokens' frequencies.
"""

from __future__ import annotations

import numpy as np

from stability.errors import UsageError, check_n
from stability.loop import PointSet


def _counts(tokens: np.ndarray, k: int) -> np.ndarray:
    """Counts per run of symbols 0..k-1 in tokens of shape (R, M): (R, k)."""
    r = tokens.shape[0]
    flat = tokens + k * np.arange(r)[:, None]
    return np.bincount(flat.ravel(), minlength=r * k).reshape(r, k).astype(float)


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: cdf (..., K) and uniforms u (...) -> symbols (...)."""
    k = cdf.shape[-1]
    return np.minimum(np.sum(u[..., None] >= cdf, axis=-1), k - 1)


def _entropy(p: np.ndarray) -> np.ndarray:
    logp = np.log(np.where(p > 0, p, 1.0))
    return -np.sum(p * logp, axis=-1)


class NGram:
    """Categorical (order 1) or bigram (order 2) model of tokens (fit / sample / state / metrics).

    Parameters
    ----------
    order : 1 or 2
    categories : K, the number of symbols (default: 1 + the largest symbol fitted so far)
    smoothing : a >= 0 added to every count (0: maximum likelihood)
    """

    wasserstein = False  # distances between token ids mean nothing

    def __init__(self, order=1, categories=None, smoothing=0.0):
        if order not in (1, 2):
            raise UsageError(f"ngram: order must be 1 or 2, got {order!r}")
        if categories is not None:
            check_n(categories, "ngram: categories", minimum=2)
        if not float(smoothing) >= 0:
            raise UsageError(f"ngram: smoothing must be >= 0, got {smoothing!r}")
        self.order, self.k, self.smoothing = int(order), categories, float(smoothing)
        self.inferred = categories is None
        self.unigram = self.initial = self.transition = None
        self.length = 1

    def _tokens(self, data, fitting: bool = True) -> np.ndarray:
        x = np.asarray(data.x)
        if x.dtype.kind == "f" and not np.all(x == np.round(x)):
            raise UsageError("ngram: data must be integer tokens")
        x = x.astype(np.int64)
        if x.min() < 0:
            raise UsageError("ngram: tokens must be >= 0")
        if fitting and (self.k is None or (self.inferred and x.max() >= self.k)):
            self.k = int(x.max()) + 1  # K not given: the largest symbol fitted so far, plus one
        if fitting and x.max() >= self.k:
            raise UsageError(f"ngram: tokens must lie in [0, {self.k})")
        return x

    def _normalise(self, counts: np.ndarray) -> np.ndarray:
        c = counts + self.smoothing
        total = c.sum(axis=-1, keepdims=True)
        return c / np.where(total > 0, total, 1.0)

    def fit(self, data) -> None:
        """Counts of tokens x of shape (R, N, L)."""
        x = self._tokens(data)
        r, n, length = x.shape
        self.unigram = self._normalise(_counts(x.reshape(r, -1), self.k))
        self.length = length
        if self.order == 1:
            return
        if length < 2:
            raise UsageError("ngram: order 2 needs sequences of length >= 2")
        self.initial = self._normalise(_counts(x[:, :, 0], self.k))
        pairs = (x[:, :, :-1] * self.k + x[:, :, 1:]).reshape(r, -1)
        bigram = _counts(pairs, self.k * self.k).reshape(r, self.k, self.k)
        trans = self._normalise(bigram)
        unseen = bigram.sum(axis=2) + self.k * self.smoothing == 0
        self.transition = np.where(unseen[:, :, None], self.unigram[:, None, :], trans)

    def sample(self, k: int, rng: np.random.Generator) -> PointSet:
        """k token sequences per run, shape (R, k, L), integers."""
        r = self.unigram.shape[0]
        if self.order == 1:
            cdf = np.cumsum(self.unigram, axis=1)
            u = rng.random((r, k * self.length)) * cdf[:, -1:]
            return PointSet(_draw(cdf[:, None, :], u).reshape(r, k, self.length))
        out = np.empty((r, k, self.length), dtype=np.int64)
        cdf0 = np.cumsum(self.initial, axis=1)
        out[:, :, 0] = _draw(cdf0[:, None, :], rng.random((r, k)) * cdf0[:, -1:])
        cdf = np.cumsum(self.transition, axis=2)  # (R, K, K)
        for pos in range(1, self.length):
            rows = np.take_along_axis(cdf, out[:, :, pos - 1][:, :, None], axis=1)  # (R, k, K)
            out[:, :, pos] = _draw(rows, rng.random((r, k)) * rows[:, :, -1])
        return PointSet(out)

    def state(self) -> dict:
        """unigram (R, K); with order 2 also initial (R, K) and transition (R, K, K)."""
        out = {"unigram": self.unigram}
        if self.order == 2:
            out.update(initial=self.initial, transition=self.transition)
        return out

    def metrics(self, heldout) -> dict:
        """support, entropy (nats; the entropy rate for order 2), gini_simpson, tv (R,)."""
        x = self._tokens(heldout, fitting=False)
        # Held-out symbols the model never saw have probability 0 under it.
        k = max(self.k, int(x.max()) + 1)
        freq = _counts(x.reshape(x.shape[0], -1), k)
        freq /= freq.sum(axis=1, keepdims=True)
        p = self.unigram
        tv = 0.5 * (np.abs(p - freq[:, : self.k]).sum(axis=1) + freq[:, self.k :].sum(axis=1))
        out = {"tv": tv, "gini_simpson": 1 - np.sum(p * p, axis=1)}
        if self.order == 1:
            out.update(support=np.sum(p > 0, axis=1).astype(float), entropy=_entropy(p))
        else:
            out["support"] = np.sum(self.transition > 0, axis=(1, 2)).astype(float)
            out["entropy"] = np.sum(p * _entropy(self.transition), axis=1)
        return out


class CategoricalData:
    """Real data: i.i.d. symbols with Zipf probabilities p_i ~ (i + 1)^-s (``categorical``).

    Parameters
    ----------
    categories : K
    exponent : s >= 0 (0: uniform); heavy tails are what collapse removes first
    length : tokens per sequence (1: single symbols)
    """

    def __init__(self, categories=20, exponent=1.1, length=1):
        check_n(categories, "categorical: categories", minimum=2)
        check_n(length, "categorical: length", minimum=1)
        w = np.arange(1, int(categories) + 1, dtype=float) ** -float(exponent)
        self.probs = w / w.sum()
        self.length = int(length)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n sequences, shape (n, length), integers."""
        return rng.choice(len(self.probs), size=(n, self.length), p=self.probs)

    def describe(self) -> str:
        """The number of symbols of the Zipf law, in words."""
        return f"Zipf over {len(self.probs)} symbols"


class MarkovData:
    """Real data: sequences of a Markov chain with a random transition matrix (``markov``).

    Parameters
    ----------
    categories : K
    length : L, tokens per sequence
    concentration : Dirichlet concentration of each transition row (small: peaked rows)
    seed : the chain's transition matrix (fixed, not the simulation's seed)
    """

    def __init__(self, categories=8, length=6, concentration=0.5, seed=0):
        check_n(categories, "markov: categories", minimum=2)
        check_n(length, "markov: length", minimum=2)
        g = np.random.default_rng(int(seed))
        k = int(categories)
        self.initial = g.dirichlet(np.full(k, 1.0))
        self.transition = g.dirichlet(np.full(k, float(concentration)), size=k)
        self.length = int(length)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n sequences, shape (n, L), integers."""
        out = np.empty((n, self.length), dtype=np.int64)
        out[:, 0] = _draw(np.cumsum(self.initial)[None, :], rng.random(n))
        cdf = np.cumsum(self.transition, axis=1)
        for pos in range(1, self.length):
            out[:, pos] = _draw(cdf[out[:, pos - 1]], rng.random(n))
        return out

    def describe(self) -> str:
        """The number of symbols and the sequence length, in words."""
        return f"Markov chain over {len(self.initial)} symbols, length {self.length}"
