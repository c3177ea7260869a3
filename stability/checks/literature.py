"""The field's known results on model collapse, checked by Monte-Carlo through Algorithm 1.

Each result is about a specific model; each check writes that model as a plug-in of the loop
(fit / sample / state, vectorised over R independent runs) and runs it through
`stability.loop.retrain`, so that the loop is what gets tested, then compares what the runs
measure with the published closed form or bound. Each comparison is a `verdict.Measured` with
the standard error of its Monte-Carlo mean (from the number of runs), decided by the one rule
of `stability.checks.verdict`: "holds" or "fails" only 5 standard errors or more from the
bound, so every check reports `margin_se`. A closed form is claimed to within REL_TOL (10%):
the equivalence test holds when the estimate is 5 standard errors inside that band, which the
run counts below give in --quick (their margins are in the docs); every mutant of
tests/stability/test_literature.py moves its estimate by 25% or more. The closed forms are
computed here from their definitions (gamma functions, a Markov chain), not with the toolkit's
own formulas.

Every check function takes the model class as an argument (``model=``; the models are in
`stability.collapse_models`), so that a test can hand it a mutated model and see the verdict
change. The registered ``check_*`` wrappers take the check Context (mode and seed) and return
the CheckResult fields from `stability.checks.verdict.result`, like every check.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from stability.checks import register
from stability.checks.verdict import Measured, equal, result
from stability.collapse_models import BernoulliMLE, GaussianMLE, LinearRegressionOLS, WeightedMean
from stability.loop import PointSet, Policy, retrain

GROUP = "literature"
REL_TOL = 0.10  # a closed form is claimed to within 10% of its value
GOLDEN = (1 + math.sqrt(5)) / 2


def _track(key: str, fn=None):
    """An on_iteration callback recording fn(model.state()[key]) at every t, and its store."""
    store = []

    def record(t, model, _data):
        value = model.state()[key]
        store.append(np.array(value if fn is None else fn(value), dtype=float))

    return record, store


def mean_se(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means of i.i.d. rows and their standard errors: samples (R, K) -> (K,), (K,)."""
    x = np.asarray(samples, dtype=float)
    return x.mean(axis=0), x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])


def closed_forms(samples: np.ndarray, expected, what: str, **cases) -> list[Measured]:
    """One equivalence claim per column: mean of samples (R, K) = expected (K,) within REL_TOL.

    `cases` maps a parameter name to its K values (e.g. t=[0, 5, 10]): the case of each claim.
    """
    means, ses = mean_se(samples)
    expected = np.broadcast_to(np.asarray(expected, dtype=float), means.shape)
    return [
        equal(
            means[j],
            expected[j],
            REL_TOL * abs(expected[j]),
            ses[j],
            what=what,
            **{k: v[j] for k, v in cases.items()},
        )
        for j in range(means.size)
    ]


def proportion_at_most(hits: np.ndarray, bound: float, **case) -> Measured:
    """The claim P(event) <= bound from i.i.d. indicators (R,), with the standard error of the
    fraction at the bound (a score test): decided 5 standard errors from it."""
    se = math.sqrt(bound * (1 - bound) / hits.size)
    return Measured(float(hits.mean()), float(bound), "<=", se, dict(case, runs=int(hits.size)))


def mean_chi(k: int) -> float:
    """E[chi_k] = sqrt(2) Gamma((k+1)/2) / Gamma(k/2)."""
    return math.sqrt(2) * math.exp(special.gammaln((k + 1) / 2) - special.gammaln(k / 2))


# ----------------------------------------------------------------------------------------------
# 1. fully synthetic 1D Gaussian (Shumailov et al. 2023; Alemohammad et al. 2023)


def gaussian_collapse(ctx, model=GaussianMLE) -> dict:
    """Fully synthetic refits of N(mu, sigma^2) with the unbiased variance (Shumailov et al.).

    Claims, each mean within REL_TOL of its closed form: E sigma_t = alpha(n)^(t+1) sigma
    (alpha(n) = E chi_{n-1}/sqrt(n-1), eq 19 of the paper), E sigma_t^2 = sigma^2 (the unbiased
    variance is a martingale) and E (mu_t - mu)^2 = (t + 1) sigma^2 / n.

    Design: n = 10, t <= 20, 30000 runs in --quick. sigma_t^2 is a product of t + 1 factors
    chi^2_{n-1}/(n-1), whose relative variance (1 + 2/(n-1))^(t+1) - 1 grows geometrically, so
    its mean is compared at t <= 5 only (relative standard deviation 1.5 at t = 5), and
    (mu_t - mu)^2, a Gaussian square with that random variance, likewise.
    """
    n, sigma, runs = 10, 1.0, ctx.size(30000, 30000, 120000)
    ts, ts2 = np.array([0, 5, 10, 20]), np.array([0, 2, 5])
    ts_mu = ts2
    rng = ctx.rng("lit-gaussian-collapse")
    real = PointSet(sigma * rng.standard_normal((runs, n, 1)))
    rec_mu, mus = _track("mu", lambda m: m[:, 0])
    covs = []

    def record(t, m, data):
        rec_mu(t, m, data)
        covs.append(m.state()["cov"][:, 0, 0].copy())

    retrain(model(ddof=1), real, Policy("mix", math.inf), int(ts[-1]), rng, on_iteration=record)
    var, mu = np.stack(covs, axis=1), np.stack(mus, axis=1)
    alpha = mean_chi(n - 1) / math.sqrt(n - 1)
    claims = (
        closed_forms(np.sqrt(var[:, ts]), sigma * alpha ** (ts + 1), "E sigma_t", t=ts.tolist())
        + closed_forms(var[:, ts2], sigma**2, "E sigma_t^2", t=ts2.tolist())
        + closed_forms(
            mu[:, ts_mu] ** 2, sigma**2 * (ts_mu + 1) / n, "E (mu_t - mu)^2", t=ts_mu.tolist()
        )
    )
    means = [c.shown[0] for c in claims]
    return result(
        claims,
        summary=f"n = {n}, {runs} runs, t <= {ts[-1]}: E sigma_t = alpha(n)^(t+1) sigma "
        f"({means[ts.size - 1]:.4f} vs {alpha ** (ts[-1] + 1):.4f} at t = {ts[-1]}), "
        f"E sigma_t^2 = sigma^2 (t <= {ts2[-1]}) and E (mu_t - mu)^2 = (t+1) sigma^2/n, each "
        f"within {REL_TOL:.0%}",
        details=dict(
            n=n,
            runs=runs,
            t=ts.tolist(),
            t_second_moment=ts2.tolist(),
            alpha=alpha,
            mean_sigma=means[: ts.size],
            mean_sigma2=means[ts.size : ts.size + ts2.size],
            t_error=ts_mu.tolist(),
            mean_err2=means[ts.size + ts2.size :],
            fraction_sigma_below_tenth_at_T=float(np.mean(np.sqrt(var[:, -1]) < 0.1 * sigma)),
            note="the unbiased variance is a martingale (E sigma_t^2 constant) while sigma_t -> 0 "
            "almost surely: collapse in probability, not in the second moment",
        ),
    )


@register(
    "lit-gaussian-collapse",
    "Fully synthetic refits of N(mu, sigma^2) (unbiased variance, n samples): E sigma_t = "
    "alpha(n)^(t+1) sigma -> 0 while E sigma_t^2 = sigma^2 and E (mu_t - mu)^2 = (t+1) sigma^2/n",
    "Shumailov et al. 2023 (Thm 3.1); Alemohammad et al. 2023",
    GROUP,
)
def check_gaussian_collapse(ctx):
    """Shumailov et al. / Alemohammad et al.: collapse of a refit Gaussian (see `gaussian_collapse`
    for the claims, the closed forms and the design).
    """
    return gaussian_collapse(ctx)


# ----------------------------------------------------------------------------------------------
# 2. accumulating data (Gerstgrasser et al. 2024; Dey and Donoho 2024)


def accumulate_errors(ctx, model, regression, steps: int, n: int = 20) -> dict:
    """Scaled errors (R, steps + 1) of the three accumulating models, each by retrain.

    Gaussian mean in R^2 with the covariance refit (MLE) and known: n ||mu_t - mu||^2 / d;
    least squares on a fixed design in R^3: ||w_t - w*||^2 (n - d - 1) / d (sigma = 1).
    """
    rng = ctx.rng("lit-accumulate")
    runs, d = ctx.size(ACCUMULATE_RUNS, 12000, 4 * ACCUMULATE_RUNS), 2
    rows = {}
    for label, fitted in (("mle", model(ddof=0)), ("known-cov", model(cov=np.eye(d)))):
        real = PointSet(rng.standard_normal((runs, n, d)))
        rec, mus = _track("mu", lambda m: (m**2).sum(axis=1) * n / d)
        retrain(fitted, real, Policy("accumulate", 1.0), steps, rng, on_iteration=rec)
        rows[label] = np.stack(mus, axis=1)
    dr = 3
    x = rng.standard_normal((runs, n, dr))
    w_star = np.ones(dr)
    y = x @ w_star + rng.standard_normal((runs, n))
    rec, ws = _track("w", lambda w: ((w - w_star) ** 2).sum(axis=1) * (n - dr - 1) / dr)
    real = PointSet(np.concatenate([x, y[:, :, None]], 2))
    policy = Policy("accumulate", 1.0)
    retrain(regression(fixed_design=True), real, policy, steps, rng, on_iteration=rec)
    rows["regression"] = np.stack(ws, axis=1)
    return rows


ACCUMULATE_RUNS = 9000


def accumulate_bound(ctx, model=GaussianMLE, regression=LinearRegressionOLS) -> dict:
    """Accumulating real and synthetic data keeps the error bounded (Gerstgrasser et al.).

    Claims: with the covariance refit (maximum likelihood), n E||mu_t - mu||^2 / tr Sigma <=
    pi^2/6 for every t <= 8; with known covariance it equals sum_{k<=t+1} 1/k^2, and least
    squares on a fixed design likewise (times sigma^2 d/(n-d-1)), each within REL_TOL.

    Design: n = 20, d = 2, 9000 runs in --quick (12000 in default), t <= 8: the bound is
    closest at the last step, where sum_{k<=9} 1/k^2 = 1.540 is 0.105 below pi^2/6 and the
    refit covariance keeps the error below the known-covariance sum.
    """
    steps, n = 8, 20
    rows = accumulate_errors(ctx, model, regression, steps, n)
    runs = rows["mle"].shape[0]
    ts = list(range(steps + 1))
    harmonic = np.cumsum(1.0 / np.arange(1, steps + 2) ** 2)  # sum_{k<=t+1} 1/k^2
    bound = math.pi**2 / 6
    claims = []
    for label in ("known-cov", "regression"):  # exact: sum_{k=1}^{t+1} 1/k^2
        claims += closed_forms(
            rows[label], harmonic, "sum_{k<=t+1} 1/k^2", model=[label] * len(ts), t=ts
        )
    means, ses = mean_se(rows["mle"])
    claims += [
        Measured(float(m), bound, "<=", float(se), dict(model="mle", t=t, what="<= pi^2/6"))
        for t, m, se in zip(ts, means, ses)
    ]
    return result(
        claims,
        summary=f"accumulating (lam = 1, {runs} runs, t <= {steps}): n E||mu_t - mu||^2 / tr Sigma "
        f"peaks at {means.max():.3f} <= pi^2/6 = {bound:.3f} (covariance refit); with known "
        f"covariance and for least squares on a fixed design it equals sum_{{k<=t+1}} 1/k^2 "
        f"within {REL_TOL:.0%}",
        details=dict(
            n=n,
            runs=runs,
            steps=steps,
            harmonic=harmonic.tolist(),
            mle=means.tolist(),
            known_cov=rows["known-cov"].mean(axis=0).tolist(),
            regression=rows["regression"].mean(axis=0).tolist(),
        ),
    )


@register(
    "lit-accumulate-bound",
    "Accumulating real and synthetic data (lam = 1): the error of the mean stays below "
    "(pi^2/6) tr(Sigma)/n for every t (within 10% of sum_{k<=t+1} 1/k^2 tr(Sigma)/n with known "
    "covariance), and least squares on a fixed design likewise (sigma^2 d/(n-d-1) factor)",
    "Gerstgrasser et al. 2024 (Thm 2); Dey and Donoho 2024",
    GROUP,
)
def check_accumulate(ctx):
    """Gerstgrasser et al. / Dey and Donoho: accumulating data keeps the error below pi^2/6
    tr(Sigma)/n (see `accumulate_bound`).
    """
    return accumulate_bound(ctx)


# ----------------------------------------------------------------------------------------------
# 3. linear regression, fully synthetic (Dohmatob et al. 2024)


def regression_growth(ctx, model=LinearRegressionOLS) -> dict:
    """Least squares refit on its own labels with fresh designs (Dohmatob et al.).

    Claim: E||w_t - w*||^2 = (t + 1) sigma^2 d / (n - d - 1) for t <= 10, each within REL_TOL.
    Design: d = 4, n = 20, 10000 runs in --quick; the relative spread of ||w_t - w*||^2 is
    largest at t = 0 (one inverse-Wishart trace), about 0.9.
    """
    rng = ctx.rng("lit-regression-linear")
    runs, steps, d, n, sigma = ctx.size(10000, 10000, 40000), 10, 4, 20, 1.0
    x = rng.standard_normal((runs, n, d))
    w_star = np.linspace(-1, 1, d)
    y = x @ w_star + sigma * rng.standard_normal((runs, n))
    rec, errs = _track("w", lambda w: ((w - w_star) ** 2).sum(axis=1))
    retrain(
        model(sigma=sigma),
        PointSet(np.concatenate([x, y[:, :, None]], 2)),
        Policy("mix", math.inf),
        steps,
        rng,
        on_iteration=rec,
    )
    err = np.stack(errs, axis=1)
    ts = np.arange(steps + 1)
    expected = sigma**2 * d / (n - d - 1) * (ts + 1)
    claims = closed_forms(err, expected, "E||w_t - w*||^2", t=ts.tolist())
    slope = float(np.polyfit(ts, err.mean(axis=0), 1)[0])
    return result(
        claims,
        summary=f"d = {d}, n = {n}, {runs} runs: the test error E||w_t - w*||^2 grows linearly, "
        f"slope {slope:.4f} per generation vs sigma^2 d/(n-d-1) = {expected[0]:.4f}; each "
        f"t <= {steps} within {REL_TOL:.0%} of (t+1) sigma^2 d/(n-d-1)",
        details=dict(
            runs=runs,
            mean_error=err.mean(axis=0).tolist(),
            expected=expected.tolist(),
            slope=slope,
        ),
    )


@register(
    "lit-regression-linear-growth",
    "Least squares refit on labels from the previous model with fresh Gaussian designs: "
    "E||w_t - w*||^2 = (t + 1) sigma^2 d / (n - d - 1), linear in the generation t (within 10%)",
    "Dohmatob et al. 2024 (Model collapse demystified, Thm 4.1)",
    GROUP,
)
def check_regression(ctx):
    """Dohmatob et al.: the linear growth of the least-squares error (see `regression_growth`)."""
    return regression_growth(ctx)


# ----------------------------------------------------------------------------------------------
# 4. Bernoulli, fully synthetic (Suresh et al. 2024): martingale, loss, time to loss


def wright_fisher(n: int, p: float):
    """Exact loss probability and mean time to loss given loss, from Binomial(n, p) at t = 0.

    The chain k -> Binomial(n, k/n) on 0..n, absorbing at 0 and n: with Q its transient block,
    u = P(absorbed at 0) solves (I - Q) u = P(. -> 0), and E[T 1{loss}] solves
    (I - Q) v = u (first-step analysis).
    """
    k = np.arange(n + 1)
    trans = stats.binom.pmf(k[None, :], n, k[:, None] / n)
    inner = slice(1, n)
    eye = np.eye(n - 1) - trans[inner, inner]
    u = np.zeros(n + 1)
    u[0] = 1.0
    u[inner] = np.linalg.solve(eye, trans[inner, 0])
    v = np.zeros(n + 1)
    v[inner] = np.linalg.solve(eye, u[inner])
    start = stats.binom.pmf(k, n, p)
    loss = float(start @ u)
    return loss, float(start @ v) / loss


def bernoulli_collapse(ctx, model=BernoulliMLE) -> dict:
    """Fully synthetic frequency refits of a Bernoulli(p) (Suresh et al.): a Wright-Fisher chain.

    Claims, each within REL_TOL: E p_t = p at t in {0, n/2, n, 3n} (a martingale); the symbol
    is lost in a fraction 1 - p of the runs; the mean time to loss among the lost runs equals
    the chain's (`wright_fisher`). Control: the chain's loss probability is 1 - p (optional
    stopping), so the chain is solved right.

    Design: n = 20, p = 0.2, 30000 runs in --quick (45000 in default), 8n = 160 generations:
    the chain's second eigenvalue is 1 - 1/n, so a run is still unabsorbed with probability
    about (1 - 1/n)^160 = 3e-4, 0.1 standard error of the loss fraction; p_t in {0, 1} late
    in the run has standard deviation sqrt(p (1 - p)) = 0.4, twice p.
    """
    n, p, runs = 20, 0.2, ctx.size(30000, 45000, 120000)
    steps = 8 * n
    rng = ctx.rng("lit-bernoulli")
    real = PointSet((rng.random((runs, n, 1)) < p).astype(float))
    rec, ps = _track("p")
    retrain(model(), real, Policy("mix", math.inf), steps, rng, on_iteration=rec)
    path = np.stack(ps, axis=1)
    checkpoints = [0, n // 2, n, 3 * n]
    lost = path[:, -1] == 0
    loss_exact, time_exact = wright_fisher(n, p)
    hit = np.argmax(path == 0, axis=1)
    kimura = -2 * n * p * math.log(p) / (1 - p)
    claims = closed_forms(path[:, checkpoints], p, "E p_t = p", t=checkpoints)
    claims += closed_forms(lost[:, None], [1 - p], "P(loss) = 1 - p", runs=[runs])
    if lost.sum() >= 2:  # with no loss there is no time to loss, and the claim above fails
        claims += closed_forms(
            hit[lost, None].astype(float),
            [time_exact],
            "E[T | loss] = chain",
            lost=[int(lost.sum())],
        )
    control = Measured(abs(loss_exact - (1 - p)), 1e-9, case=dict(what="chain loss = 1 - p"))
    means = mean_se(path[:, checkpoints])[0]
    time_mc = float(hit[lost].mean()) if lost.any() else math.nan
    return result(
        claims,
        controls=[control],
        summary=f"n = {n}, p = {p}, {runs} runs: E p_t = p at t in {checkpoints}; lost in "
        f"{lost.mean():.3f} of runs (1 - p = {1 - p}, chain {loss_exact:.4f}); mean time to loss "
        f"{time_mc:.1f} generations (exact chain {time_exact:.1f}; Kimura's diffusion "
        f"approximation -2 n p ln p/(1-p) = {kimura:.1f}, {100 * (kimura / time_exact - 1):+.0f}%): "
        f"each within {REL_TOL:.0%}; linear in the count n p up to the log factor",
        details=dict(
            n=n,
            p=p,
            runs=runs,
            steps=steps,
            mean_p=means.tolist(),
            loss_fraction=float(lost.mean()),
            loss_exact=loss_exact,
            time_exact=time_exact,
            time_mc=time_mc,
            time_kimura=kimura,
        ),
    )


@register(
    "lit-bernoulli-martingale",
    "Fully synthetic frequency refits of a Bernoulli(p): p_t is a martingale, the symbol is lost "
    "with probability 1 - p, and the expected time to lose it matches the Wright-Fisher chain "
    "(about -2 n p ln p / (1 - p) generations), each within 10%",
    "Suresh et al. 2024 (Rate of model collapse in recursive training); Kimura and Ohta 1969",
    GROUP,
)
def check_bernoulli(ctx):
    """Suresh et al.: the Bernoulli refit as a Wright-Fisher chain (see `bernoulli_collapse`)."""
    return bernoulli_collapse(ctx)


# ----------------------------------------------------------------------------------------------
# 5. Gaussian tail bound (Suresh et al. 2024)


def gaussian_tail(ctx, model=GaussianMLE) -> dict:
    """Fully synthetic 1D Gaussian refits: P(sigma_k > sigma_0/2) <= 2 exp(-k/(4n)) (Suresh et al.).

    Claim, at k in {40, 80, 120} (at k = 20 the bound exceeds 1): each fraction of runs with
    sigma_k > sigma_0/2 is at most the bound, decided 5 standard errors (of a fraction at the
    bound) below it. Design: n = 10, 4000 runs in --quick; the bound is closest at k = 120,
    0.0996 against a probability near 0.01, 20 standard errors.
    """
    n, ratio, runs = 10, 0.5, ctx.size(4000, 4000, 40000)
    ks = np.array([40, 80, 120])
    rng = ctx.rng("lit-gaussian-tail")
    real = PointSet(rng.standard_normal((runs, n, 1)))
    rec, sig = _track("cov", lambda c: np.sqrt(c[:, 0, 0]))
    retrain(model(ddof=1), real, Policy("mix", math.inf), int(ks[-1]), rng, on_iteration=rec)
    sig = np.stack(sig, axis=1)
    above = sig[:, ks] > ratio * sig[:, :1]
    bound = np.exp(-ks / (4 * n)) / ratio
    claims = [proportion_at_most(above[:, j], bound[j], k=int(k)) for j, k in enumerate(ks)]
    alpha = mean_chi(n - 1) / math.sqrt(n - 1)
    return result(
        claims,
        summary=f"n = {n}, {runs} runs: P(sigma_k > sigma_0/2) = "
        + ", ".join(f"{v:.4f}" for v in above.mean(axis=0))
        + f" at k = {ks.tolist()} vs the bound 2 exp(-k/(4n)) = "
        + ", ".join(f"{b:.3f}" for b in bound)
        + f" (it follows from Markov's inequality as alpha(n) = {alpha:.4f} <= exp(-1/(4n)) = "
        f"{math.exp(-1 / (4 * n)):.4f})",
        details=dict(
            k=ks.tolist(),
            probability=above.mean(axis=0).tolist(),
            bound=bound.tolist(),
            alpha=alpha,
            markov_condition=bool(alpha <= math.exp(-1 / (4 * n))),
        ),
    )


@register(
    "lit-gaussian-tail",
    "Fully synthetic 1D Gaussian refits: P(sigma_k > eps) <= (sigma_0/eps) exp(-k/(4n))",
    "Suresh et al. 2024 (Rate of model collapse in recursive training)",
    GROUP,
)
def check_gaussian_tail(ctx):
    """Suresh et al.: the tail bound on sigma_k (see `gaussian_tail`)."""
    return gaussian_tail(ctx)


# ----------------------------------------------------------------------------------------------
# 6. fresh data with weighting (He et al. 2025)


def stationary_mse(w, lam: float, n: int, sigma: float = 1.0):
    """Stationary E (mu_t - mu)^2 of mu_t = w m_real + (1 - w)(mu_{t-1} + noise), an AR(1).

    With n fresh real points and lam n synthetic ones, m_real has variance sigma^2/n and the
    synthetic mean sigma^2/(lam n) around mu_{t-1}:
    V = (sigma^2 / n) (w^2 + (1 - w)^2 / lam) / (1 - (1 - w)^2).
    """
    w = np.asarray(w, dtype=float)
    return sigma**2 / n * (w**2 + (1 - w) ** 2 / lam) / (1 - (1 - w) ** 2)


def golden_weight(lam: float) -> float:
    """He et al.'s optimal weight (sqrt(k^2 + 4k) - k)/2, k = 1/lam real points per synthetic one.

    This reading of k (real to synthetic sizes) is the one under which the formula minimises
    `stationary_mse`; both readings give 1/phi at lam = 1, the case the check runs.
    """
    k = 1.0 / lam
    return (math.sqrt(k * k + 4 * k) - k) / 2


def stationary_errors(ctx, model, weights, lam: float, n: int, sigma: float) -> np.ndarray:
    """Per-run mean of (mu_t - mu*)^2 over t in [30, 60] (past the transient (1 - w)^30), one
    column per weight: shape (R, len(weights)), each column from its own retrain.

    Every weight's retrain draws the same stream (common random numbers): the columns are
    correlated, so the difference of two weights' errors has a small standard error.
    """
    runs, steps = ctx.size(2000, 2000, 20000), 60

    def fresh(m, g):
        return PointSet(np.stack([sigma * g.standard_normal((runs, m)), np.ones((runs, m))], 2))

    measured = []
    for w in weights:
        rng = ctx.rng("lit-golden-ratio")
        rec, mus = _track("mu", lambda mu: mu**2)
        policy = Policy("fresh", lam)
        retrain(model(w, sigma), fresh(n, rng), policy, steps, rng, rec, fresh_source=fresh)
        measured.append(np.stack(mus, axis=1)[:, steps // 2 :].mean(axis=1))
    return np.stack(measured, axis=1)


def golden_ratio(ctx, model=WeightedMean) -> dict:
    """Fresh real data plus synthetic data, the real data weighted by w (He et al.).

    Claims: the stationary error of each weight in {w*, 1/(1 + k), 0.9} is within REL_TOL of
    `stationary_mse`; w* = (sqrt(k^2 + 4k) - k)/2 minimises that closed form (exact, to 1e-6,
    by a scalar minimiser); and w* beats plain pooling, decided 5 standard errors above 0 on
    the paired difference of the two errors. Design: n = 20, lam = 1, 60 generations, 2000
    runs in --quick; the weights share their random numbers, so the pooling gain (8% of the
    error) is measured on paired runs.
    """
    from scipy.optimize import minimize_scalar

    n, k, sigma = 20, 1.0, 1.0  # k = lam: synthetic points per real one
    w_opt = golden_weight(k)
    numeric = minimize_scalar(
        lambda w: float(stationary_mse(w, k, n, sigma)),
        bounds=(1e-6, 1),
        method="bounded",
        options={"xatol": 1e-10},
    ).x
    numeric = float(numeric)
    weights = (w_opt, 1 / (1 + k), 0.9)
    samples = stationary_errors(ctx, model, weights, k, n, sigma)
    expected = stationary_mse(np.array(weights), k, n, sigma)
    claims = closed_forms(samples, expected, "stationary E(mu - mu*)^2", w=list(weights))
    claims.append(Measured(abs(numeric - w_opt), 1e-6, case=dict(what="argmin = w*")))
    gain, gain_se = mean_se(samples[:, 1:2] - samples[:, 0:1])
    claims.append(Measured(float(gain[0]), 0.0, ">=", float(gain_se[0]), dict(what="gain > 0")))
    means = mean_se(samples)[0]
    return result(
        claims,
        summary=f"fresh data (n = {n} real + lam n synthetic, lam = {k:g}): the weight minimising "
        f"the stationary error is {numeric:.6f} = w* = 1/phi = {1 / GOLDEN:.6f}; "
        f"stationary n E(mu - mu*)^2 = {n * means[0]:.4f} at w* (closed form "
        f"{n * expected[0]:.4f}), {n * means[1]:.4f} with plain pooling "
        f"w = 1/(1+k) ({n * expected[1]:.4f}), each within {REL_TOL:.0%}; w* gains "
        f"{n * gain[0]:.4f} +- {n * gain_se[0]:.4f} over pooling",
        details=dict(
            weights=list(weights),
            mse=means.tolist(),
            closed_form=expected.tolist(),
            argmin_numeric=numeric,
            w_star=w_opt,
            gain_over_pooling=float(gain[0]),
            gain_se=float(gain_se[0]),
        ),
    )


@register(
    "lit-golden-ratio",
    "Fresh real data each generation plus synthetic data from the previous model: weighting the "
    "real data by w* = (sqrt(k^2+4k) - k)/2, k = 1/lam (1/phi for lam = 1) minimises the "
    "stationary error (w^2 + (1-w)^2/lam)/(1 - (1-w)^2) sigma^2/n (measured within 10%), below "
    "plain pooling",
    "He, Xu and Cheng 2025 (A golden ratio weighting prevents model collapse)",
    GROUP,
)
def check_golden_ratio(ctx):
    """He et al.: the golden-ratio weighting of fresh real data (see `golden_ratio`)."""
    return golden_ratio(ctx)
