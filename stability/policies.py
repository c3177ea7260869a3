"""Data policies from the field, next to the loop's four, and the factories that name them all.

Every policy here follows `stability.loop.DataPolicy`. The field's three process the synthetic
samples before they join the real data; like `mix`, they train on all n real points plus
floor(lam n) processed samples (lam = inf: n processed samples only):

- `Curate` (Ferbach et al. 2024, "Self-consuming generative models with curated data provably
  optimize human preferences"): either keep the top fraction q of ceil(k / q) samples by a
  reward r(x), or, for each of the k samples, draw K candidates and keep one with probability
  exp(r(x_i) / tau) / sum_j exp(r(x_j) / tau) (Bradley-Terry preferences generalised to K
  candidates, their eq 2).
- `Verify` (Feng et al. 2024, "Beyond model collapse: scaling up with synthesized data requires
  verification"): drop the samples a verifier rejects. The k kept samples are drawn until k are
  accepted per run (rejection sampling), so they follow the model conditioned on acceptance,
  as the filtered set does, while the training set keeps its size.
- `SelfCorrect` (Gillman et al. 2024, "Self-correcting self-consuming loops for generative model
  training"): move each sample toward the data, x <- x + gamma (c(x) - x), with a correction
  function c and strength gamma in [0, 1] (their pi_gamma, realised on samples).

Rewards, verifiers and corrections are functions f(x, real) of the samples x, shape
(R, m, *point shape), and of the runs' real data, shape (R, n, *point shape): a reward returns
scores (R, m), a verifier booleans (R, m), a correction points of x's shape. They are plugins
(groups ``stability.rewards``, ``stability.verifiers``, ``stability.corrections``, or an import
path); the shipped ones are below. The factories at the end (`mix` ... `self_correct`) are the
entry points of group ``stability.policies``: ``factory(lam, **params)`` returns a policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from stability.errors import RunError, UsageError, check_lam, check_n
from stability.linalg import sqrtm_psd, sym
from stability.loop import LoopState, PointSet, Policy, synthetic_count
from stability.plugins import call, check_methods, first_line, load, load_function

POLICY_METHODS = ("train_set", "sizes")


def _points(batch) -> np.ndarray:
    x = getattr(batch, "x", None)
    if x is None:
        raise UsageError(
            f"the field's policies need point data (a PointSet), got {type(batch).__name__}"
        )
    return np.asarray(x)


def apply_rule(fn: Callable, name: str, what: str, x: np.ndarray, real: np.ndarray, shape):
    """f(x, real), checked: an array of `shape` with finite numbers.

    Parameters
    ----------
    fn : the reward, verifier or correction
    name : its plugin name, for messages
    what : "reward", "verifier" or "correction"
    x : samples, shape (R, m, ...)
    real : the real data, shape (R, n, ...)
    shape : the shape its result must have

    Raises
    ------
    RunError
        The function raised (one line naming it).
    UsageError
        It returned the wrong shape or non-finite numbers (a defect of the plugin).
    """
    try:
        out = np.asarray(fn(x, real))
    except Exception as exc:  # the plugin's code failed; name it
        raise RunError(f"{what} {name!r} failed: {first_line(exc)}") from exc
    if out.shape != tuple(shape):
        raise UsageError(
            f"{what} {name!r} returned shape {out.shape}, expected {tuple(shape)} for samples "
            f"of shape {x.shape}"
        )
    if out.dtype.kind not in "biuf" or (out.dtype.kind == "f" and not np.all(np.isfinite(out))):
        raise UsageError(f"{what} {name!r} returned non-finite or non-numeric values")
    return out


class SyntheticMix:
    """The base of the field's policies: D_real plus floor(lam n) processed model samples.

    Subclasses define `draw(model, k, real, rng)`, the k processed samples per run.

    Parameters
    ----------
    lam : float >= 0, or inf (n processed samples only)
    """

    name = "synthetic-mix"

    def __init__(self, lam: float):
        self.lam = check_lam(lam)

    def detail(self) -> str:
        """What the processing is, for the label."""
        return ""

    @property
    def label(self) -> str:
        """``name(lam=..., detail)``, the policy's label in tables and figures."""
        return f"{self.name}(lam={self.lam:g}, {self.detail()})"

    def sizes(self, n: int, iterations: int) -> list[int]:
        """Training-set sizes [n, n + k, ..., n + k], length T + 1.

        k = floor(lam n); for lam = inf the later sets have n points.
        """
        k = synthetic_count(self.lam, n)
        return [n] + [k if math.isinf(self.lam) else n + k] * iterations

    def train_set(self, t, real, model, rng, state: LoopState, fresh_source=None):
        """Algorithm 1's training set at step t: D_real together with k = floor(lam n) drawn points.

        For lam = inf the set is n drawn points alone; for k = 0 it is D_real alone.
        """
        n = real.size
        k = synthetic_count(self.lam, n)
        if math.isinf(self.lam):
            return self.draw(model, n, real, rng)
        return real if k == 0 else real.union(self.draw(model, k, real, rng))

    def draw(self, model, k: int, real, rng: np.random.Generator) -> PointSet:
        """k synthetic points for each run from the current model (this class: plain samples).

        Parameters
        ----------
        model
            The current model (fit / sample / state protocol).
        k : int
            Number of points per run.
        real : PointSet
            The real data, shape (R, n, ...).
        rng : numpy.random.Generator
            Randomness of this step.

        Returns
        -------
        PointSet
            Shape (R, k, ...).
        """
        raise NotImplementedError


class Curate(SyntheticMix):
    """Curation by a reward (Ferbach et al. 2024): top fraction, or K-candidate preferences.

    Parameters
    ----------
    lam : float
    reward : f(x, real) -> scores (R, m)
    reward_name : its name, for labels and messages
    fraction : q in (0, 1]: keep the k best of ceil(k / q) samples (None: preference mode)
    candidates : K >= 2: each kept sample is one of K fresh candidates, drawn with probability
        softmax(r / temperature) (Gumbel-max, exact)
    temperature : tau > 0 of the preferences
    """

    name = "curate"

    def __init__(
        self, lam, reward, reward_name="reward", fraction=None, candidates=None, temperature=1.0
    ):
        super().__init__(lam)
        if (fraction is None) == (candidates is None):
            raise UsageError("curate takes either fraction (top fraction) or candidates (K)")
        if fraction is not None and not (0 < float(fraction) <= 1):
            raise UsageError(f"curate: fraction must be in (0, 1], got {fraction!r}")
        if candidates is not None:
            check_n(candidates, "curate: candidates", minimum=2)
        if not (math.isfinite(float(temperature)) and float(temperature) > 0):
            raise UsageError(f"curate: temperature must be > 0, got {temperature!r}")
        self.reward, self.reward_name = reward, reward_name
        self.fraction = None if fraction is None else float(fraction)
        self.candidates = None if candidates is None else int(candidates)
        self.temperature = float(temperature)

    def detail(self) -> str:
        """The selection rule: top fraction by the reward, or 1 of K with temperature tau."""
        if self.fraction is not None:
            return f"top {self.fraction:g} by {self.reward_name}"
        return f"1 of {self.candidates} by {self.reward_name}, tau={self.temperature:g}"

    def draw(self, model, k, real, rng):
        """k points per run kept by the reward.

        The top k of ceil(k / fraction) samples, or one of K candidates by softmax(r / tau).
        """
        real_x = _points(real)
        if self.fraction is not None:
            m = math.ceil(k / self.fraction - 1e-9)
            x = _points(model.sample(m, rng))
            r = apply_rule(self.reward, self.reward_name, "reward", x, real_x, x.shape[:2])
            best = np.argsort(-r, axis=1, kind="stable")[:, :k]
            best = best.reshape(best.shape + (1,) * (x.ndim - 2))
            return PointSet(np.take_along_axis(x, best, axis=1))
        K = self.candidates
        x = _points(model.sample(k * K, rng))
        r = apply_rule(self.reward, self.reward_name, "reward", x, real_x, x.shape[:2])
        runs = x.shape[0]
        # argmax of r / tau + Gumbel noise is a draw from softmax(r / tau) (Gumbel-max trick).
        noisy = r.reshape(runs, k, K) / self.temperature + rng.gumbel(size=(runs, k, K))
        pick = np.argmax(noisy, axis=2) + K * np.arange(k)[None, :]
        pick = pick.reshape(pick.shape + (1,) * (x.ndim - 2))
        return PointSet(np.take_along_axis(x, pick, axis=1))


class Verify(SyntheticMix):
    """Verification (Feng et al. 2024): only samples the verifier accepts are trained on.

    Parameters
    ----------
    lam : float
    verifier : f(x, real) -> booleans (R, m), True = accepted
    verifier_name : its name
    max_rounds : batches of k samples drawn per run at most before giving up (RunError)
    """

    name = "verify"

    def __init__(self, lam, verifier, verifier_name="verifier", max_rounds=100):
        super().__init__(lam)
        check_n(max_rounds, "verify: max_rounds", minimum=1)
        self.verifier, self.verifier_name = verifier, verifier_name
        self.max_rounds = int(max_rounds)

    def detail(self) -> str:
        """The verifier's name."""
        return f"by {self.verifier_name}"

    def draw(self, model, k, real, rng):
        """k points per run that pass the verifier, drawing again up to ``max_rounds`` times."""
        real_x = _points(real)
        out, count = None, None
        for _ in range(self.max_rounds):
            x = _points(model.sample(k, rng))
            ok = apply_rule(self.verifier, self.verifier_name, "verifier", x, real_x, x.shape[:2])
            ok = ok.astype(bool)
            if out is None:
                out, count = np.empty_like(x), np.zeros(x.shape[0], dtype=np.int64)
            # Accepted samples go to the next free slots of their run, in order of drawing.
            slot = count[:, None] + np.cumsum(ok, axis=1) - 1
            r, j = np.nonzero(ok & (slot < k))
            out[r, slot[r, j]] = x[r, j]
            count = np.minimum(count + ok.sum(axis=1), k)
            if np.all(count >= k):
                return PointSet(out)
        raise RunError(
            f"verify: the verifier {self.verifier_name!r} accepted only {int(count.min())} of the "
            f"{k} samples needed in {self.max_rounds} rounds of {k} draws (raise max_rounds, or "
            "the model no longer produces samples it accepts)"
        )


class SelfCorrect(SyntheticMix):
    """Self-correction (Gillman et al. 2024): x <- x + gamma (c(x) - x) before training.

    Parameters
    ----------
    lam : float
    correction : c(x, real) -> points of x's shape
    correction_name : its name
    strength : gamma in [0, 1] (0: no correction, 1: c(x) itself)
    """

    name = "self-correct"

    def __init__(self, lam, correction, correction_name="correction", strength=1.0):
        super().__init__(lam)
        if not (0.0 <= float(strength) <= 1.0):
            raise UsageError(f"self-correct: strength must be in [0, 1], got {strength!r}")
        self.correction, self.correction_name = correction, correction_name
        self.strength = float(strength)

    def detail(self) -> str:
        """The correction's name and its strength gamma."""
        return f"{self.correction_name}, gamma={self.strength:g}"

    def draw(self, model, k, real, rng):
        """k samples moved toward their corrections, x + gamma (c(x) - x); shape (R, k, ...)."""
        x = _points(model.sample(k, rng)).astype(float)
        c = apply_rule(
            self.correction, self.correction_name, "correction", x, _points(real), x.shape
        )
        return PointSet(x + self.strength * (c - x))


# ---- shipped rewards, verifiers, corrections (x: (R, m, d), real: (R, n, d)) -------------------


def first_coordinate(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Reward r(x) = x_1, the first coordinate: a linear reward. Shape (R, m)."""
    return np.asarray(x, dtype=float)[:, :, 0]


def _gaussian_fit(real: np.ndarray):
    """Mean (R, d) and unbiased covariance (R, d, d) of each run's points (R, n, d)."""
    real = np.asarray(real, dtype=float)
    mean = real.mean(axis=1)
    xc = real - mean[:, None, :]
    cov = np.einsum("rni,rnj->rij", xc, xc) / (real.shape[1] - 1)
    return mean, cov


def _log_density(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x; mean_r, cov_r) per run, x (R, m, d) -> (R, m); pseudo-inverse if singular."""
    d = x.shape[2]
    w, v = np.linalg.eigh(sym(cov))
    floor = 1e-12 * np.maximum(w.max(axis=1, keepdims=True), 1e-300)
    w = np.maximum(w, floor)
    z = np.einsum("rmi,rij->rmj", x - mean[:, None, :], v) / np.sqrt(w)[:, None, :]
    return -0.5 * (
        np.sum(z * z, axis=2) + np.log(w).sum(axis=1)[:, None] + d * math.log(2 * math.pi)
    )


def data_likelihood(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Reward: log-density of x under the Gaussian fitted to the run's real data. (R, m)."""
    mean, cov = _gaussian_fit(real)
    return _log_density(np.asarray(x, dtype=float), mean, cov)


def within_data_range(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Verifier: accept x inside the bounding box of the run's real points. (R, m) booleans."""
    lo = np.min(real, axis=1)[:, None, :]
    hi = np.max(real, axis=1)[:, None, :]
    return np.all((x >= lo) & (x <= hi), axis=2)


def likely_under_data(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Verifier: accept x at least as likely, under the Gaussian fitted to the real data, as the
    least likely 5% of the real points. (R, m) booleans."""
    mean, cov = _gaussian_fit(real)
    threshold = np.quantile(_log_density(np.asarray(real, float), mean, cov), 0.05, axis=1)
    return data_likelihood(x, real) >= threshold[:, None]


def _nearest_distance(x: np.ndarray, real: np.ndarray, skip_self: bool = False) -> np.ndarray:
    """Distance from each x (R, m, d) to its nearest real point (R, n, d): (R, m)."""
    d2 = (
        np.sum(x * x, axis=2)[:, :, None]
        - 2 * np.einsum("rmi,rni->rmn", x, real)
        + np.sum(real * real, axis=2)[:, None, :]
    )
    if skip_self:
        d2[:, np.arange(x.shape[1]), np.arange(x.shape[1])] = np.inf
    return np.sqrt(np.maximum(np.min(d2, axis=2), 0.0))


def near_real_data(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Verifier: accept x no farther from the run's real points than 95% of the real points are
    from their nearest other real point (a support test that follows every mode). (R, m)."""
    x, real = np.asarray(x, dtype=float), np.asarray(real, dtype=float)
    radius = np.quantile(_nearest_distance(real, real, skip_self=True), 0.95, axis=1)
    return _nearest_distance(x, real) <= radius[:, None]


def gaussian_ot(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Correction: the optimal transport map from the samples' Gaussian to the data's.

    c(x) = m_r + A (x - m_x), A = S_x^{-1/2} (S_x^{1/2} S_r S_x^{1/2})^{1/2} S_x^{-1/2}, with the
    means and unbiased covariances of the batch x and of the run's real data; in 1D
    A = s_r / s_x. With strength gamma the corrected batch lies at gamma along the Wasserstein
    geodesic from its own Gaussian to the data's (moment-matching self-correction). Shapes
    (R, m, d) -> (R, m, d).
    """
    x = np.asarray(x, dtype=float)
    m_x, s_x = _gaussian_fit(x)
    m_r, s_r = _gaussian_fit(real)
    root = sqrtm_psd(s_x)
    w, v = np.linalg.eigh(sym(s_x))
    floor = 1e-12 * np.maximum(w.max(axis=1, keepdims=True), 1e-300)
    inv_root = (v / np.sqrt(np.maximum(w, floor))[:, None, :]) @ np.swapaxes(v, 1, 2)
    a = inv_root @ sqrtm_psd(root @ s_r @ root) @ inv_root
    return m_r[:, None, :] + np.einsum("rij,rmj->rmi", a, x - m_x[:, None, :])


def nearest_real(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Correction: each sample's nearest real point of its run (a projection onto the data).
    (R, m, d) -> (R, m, d)."""
    x = np.asarray(x, dtype=float)
    real = np.asarray(real, dtype=float)
    d2 = np.sum(x * x, axis=2)[:, :, None] - 2 * np.einsum("rmi,rni->rmn", x, real)
    idx = np.argmin(d2 + np.sum(real * real, axis=2)[:, None, :], axis=2)
    return np.take_along_axis(real, idx[:, :, None], axis=1)


# ---- factories: the entry points of group stability.policies ----------------------------------


def _rule(kind: str, spec) -> tuple[Callable, str]:
    if callable(spec):
        return spec, getattr(spec, "__name__", kind)
    fn, ref = load_function(kind, str(spec))
    return fn, ref.spec


def mix(lam):
    """Algorithm 1's policy: all real data plus floor(lam n) samples (lam = inf: n samples)."""
    return Policy("mix", lam)


def accumulate(lam):
    """Real data plus every synthetic batch so far (Gerstgrasser et al. 2024)."""
    return Policy("accumulate", lam)


def accumulate_subsample(lam, subsample_size=None):
    """The accumulated pool, subsampled to a fixed size (Kazdan et al. 2024)."""
    return Policy("accumulate-subsample", lam, subsample_size=subsample_size)


def fresh(lam, n_fresh=None):
    """Fresh real data each iteration plus floor(lam n) samples (Alemohammad et al. 2023)."""
    return Policy("fresh", lam, n_fresh=n_fresh)


def curate(lam, reward="first-coordinate", fraction=None, candidates=None, temperature=1.0):
    """`Curate` with a reward plugin; top half (fraction = 0.5) unless fraction or candidates."""
    fn, name = _rule("reward", reward)
    if fraction is None and candidates is None:
        fraction = 0.5
    return Curate(lam, fn, name, fraction, candidates, temperature)


def verify(lam, verifier="within-data-range", max_rounds=100):
    """`Verify` with a verifier plugin."""
    fn, name = _rule("verifier", verifier)
    return Verify(lam, fn, name, max_rounds)


def self_correct(lam, correction="gaussian-ot", strength=1.0):
    """`SelfCorrect` with a correction plugin."""
    fn, name = _rule("correction", correction)
    return SelfCorrect(lam, fn, name, strength)


def build_policy(spec: str, lam: float, params: dict | None = None):
    """The policy a plugin names, for one lambda: ``factory(lam=lam, **params)``, checked.

    Parameters
    ----------
    spec : str
        A name of group ``stability.policies`` (``mix``, ``curate``...), ``file.py:Name`` or
        ``package.module:Name``.
    lam : float
        lambda >= 0 or inf.
    params : dict, optional
        The factory's other keyword arguments.

    Returns
    -------
    DataPolicy
        With ``name`` (the spec when the object has none), ``lam``, ``label``, ``sizes``,
        ``train_set``.

    Raises
    ------
    UsageError
        One line naming the policy plugin.
    """
    factory, ref = load("policy", spec)
    if not callable(factory):
        raise UsageError(f"{ref.label} is not a factory: call it as factory(lam, **params)")
    policy = call(factory, ref, {"lam": lam, **(params or {})})
    check_methods(policy, ref, POLICY_METHODS, "policy")
    for attr in ("lam", "label"):
        if not hasattr(policy, attr):
            raise UsageError(f"{ref.label} is not a policy: it has no {attr!r}")
    if not isinstance(getattr(policy, "name", None), str):
        try:
            policy.name = spec
        except AttributeError:
            raise UsageError(f"{ref.label} is not a policy: it has no 'name'") from None
    return policy


__all__ = [
    "POLICY_METHODS",
    "build_policy",
    "Curate",
    "SelfCorrect",
    "SyntheticMix",
    "Verify",
    "accumulate",
    "accumulate_subsample",
    "apply_rule",
    "curate",
    "data_likelihood",
    "first_coordinate",
    "fresh",
    "gaussian_ot",
    "likely_under_data",
    "mix",
    "near_real_data",
    "nearest_real",
    "self_correct",
    "verify",
    "within_data_range",
]
