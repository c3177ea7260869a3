"""The field's known results on model collapse, checked by Monte-Carlo through Algorithm 1.

Each result is about a specific model; each check writes that model as a plug-in of the loop
(fit / sample / state, vectorised over R independent runs) and runs it through
`stability.loop.retrain`, so that the loop is what gets tested, then compares what the runs
measure with the published closed form or bound, with confidence intervals from the number of
runs (Bonferroni over the comparisons of a check). The closed forms are computed here from
their definitions (gamma functions, a Markov chain), not with the toolkit's own formulas.

Every check function takes the model class as an argument (``model=``; the models are in
`stability.collapse_models`), so that a test can hand it a mutated model and see the verdict
change.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from stability.checks import register
from stability.collapse_models import BernoulliMLE, GaussianMLE, LinearRegressionOLS, WeightedMean
from stability.loop import PointSet, Policy, retrain
from stability.stats import Interval, binomial_interval, mean_interval

GROUP = "literature"
LEVEL = 0.99
GOLDEN = (1 + math.sqrt(5)) / 2


def _track(key: str, fn=None):
    """An on_iteration callback recording fn(model.state()[key]) at every t, and its store."""
    store = []

    def record(t, model, _data):
        value = model.state()[key]
        store.append(np.array(value if fn is None else fn(value), dtype=float))

    return record, store


def _compare(samples: np.ndarray, expected: np.ndarray, comparisons: int):
    """CLT intervals of column means of samples (R, K) vs expected (K,): (intervals, bad)."""
    intervals = [mean_interval(samples[:, j], LEVEL, comparisons) for j in range(samples.shape[1])]
    bad = [j for j, ci in enumerate(intervals) if not ci.contains(float(expected[j]))]
    return intervals, bad


def mean_chi(k: int) -> float:
    """E[chi_k] = sqrt(2) Gamma((k+1)/2) / Gamma(k/2)."""
    return math.sqrt(2) * math.exp(special.gammaln((k + 1) / 2) - special.gammaln(k / 2))


# ----------------------------------------------------------------------------------------------
# 1. fully synthetic 1D Gaussian (Shumailov et al. 2023; Alemohammad et al. 2023)


def gaussian_collapse(ctx, model=GaussianMLE) -> dict:
    n, sigma, runs = 10, 1.0, ctx.size(4000, 10000, 40000)
    ts = np.array([0, 5, 10, 20])
    rng = ctx.rng("lit-gaussian-collapse")
    real = PointSet(sigma * rng.standard_normal((runs, n, 1)))
    rec_mu, mus = _track("mu", lambda m: m[:, 0])
    fitted = model(ddof=1)
    covs = []

    def record(t, m, data):
        rec_mu(t, m, data)
        covs.append(m.state()["cov"][:, 0, 0].copy())

    retrain(fitted, real, Policy("mix", math.inf), int(ts[-1]), rng, on_iteration=record)
    var = np.stack(covs, axis=1)[:, ts]
    mu = np.stack(mus, axis=1)[:, ts]
    alpha = mean_chi(n - 1) / math.sqrt(n - 1)
    samples = np.concatenate([np.sqrt(var), var, mu**2], axis=1)
    expected = np.concatenate(
        [sigma * alpha ** (ts + 1), np.full(ts.size, sigma**2), sigma**2 * (ts + 1) / n]
    )
    intervals, bad = _compare(samples, expected, samples.shape[1])
    collapsed = float(np.mean(np.sqrt(var[:, -1]) < 0.1 * sigma))
    j = bad[0] if bad else 2 * ts.size - 1
    return dict(
        verdict="fails" if bad else "holds",
        measured=intervals[ts.size - 1].estimate,
        expected=float(expected[ts.size - 1]),
        interval=intervals[ts.size - 1].as_list(),
        summary=f"n = {n}, {runs} runs, t <= {ts[-1]}: E sigma_t = alpha(n)^(t+1) sigma, "
        f"E sigma_t^2 = sigma^2 and E (mu_t - mu)^2 = (t+1) sigma^2/n all inside their 99% "
        f"intervals"
        if not bad
        else f"closed form outside its interval at t = {ts[j % ts.size]}"
        f" (measured {intervals[j].estimate:.4g}, expected {expected[j]:.4g})",
        details=dict(
            n=n,
            runs=runs,
            t=ts.tolist(),
            alpha=alpha,
            mean_sigma=[ci.estimate for ci in intervals[: ts.size]],
            mean_sigma2=[ci.estimate for ci in intervals[ts.size : 2 * ts.size]],
            mean_err2=[ci.estimate for ci in intervals[2 * ts.size :]],
            fraction_sigma_below_tenth_at_T=collapsed,
            note="the unbiased variance is a martingale (E sigma_t^2 constant) while sigma_t -> 0 "
            "almost surely: collapse in probability, not in the second moment",
        ),
        counterexample=None
        if not bad
        else dict(t=int(ts[j % ts.size]), expected=expected[j], interval=intervals[j].as_list()),
    )


@register(
    "lit-gaussian-collapse",
    "Fully synthetic refits of N(mu, sigma^2) (unbiased variance, n samples): E sigma_t = "
    "alpha(n)^(t+1) sigma -> 0 while E sigma_t^2 = sigma^2 and E (mu_t - mu)^2 = (t+1) sigma^2/n",
    "Shumailov et al. 2023 (Thm 3.1); Alemohammad et al. 2023",
    GROUP,
)
def check_gaussian_collapse(ctx):
    return gaussian_collapse(ctx)


# ----------------------------------------------------------------------------------------------
# 2. accumulating data (Gerstgrasser et al. 2024; Dey and Donoho 2024)


def accumulate_errors(ctx, model, regression, steps: int, n: int = 20) -> dict:
    """Scaled errors (R, steps + 1) of the three accumulating models, each by retrain.

    Gaussian mean in R^2 with the covariance refit (MLE) and known: n ||mu_t - mu||^2 / d;
    least squares on a fixed design in R^3: ||w_t - w*||^2 (n - d - 1) / d (sigma = 1).
    """
    rng = ctx.rng("lit-accumulate")
    runs, d = ctx.size(2000, 5000, 20000), 2
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


def accumulate_bound(ctx, model=GaussianMLE, regression=LinearRegressionOLS) -> dict:
    steps, n = 12, 20
    rows = accumulate_errors(ctx, model, regression, steps, n)
    runs = rows["mle"].shape[0]
    harmonic = np.cumsum(1.0 / np.arange(1, steps + 2) ** 2)  # sum_{k<=t+1} 1/k^2
    bound = math.pi**2 / 6
    comparisons = 3 * (steps + 1)
    checks = []
    for label in ("known-cov", "regression"):  # exact: sum_{k=1}^{t+1} 1/k^2
        intervals, bad = _compare(rows[label], harmonic, comparisons)
        checks.append((label, intervals, bad))
    upper = [mean_interval(rows["mle"][:, t], LEVEL, comparisons) for t in range(steps + 1)]
    over = [t for t, ci in enumerate(upper) if ci.lo > bound]
    fails = bool(over) or any(bad for _, _, bad in checks)
    worst = max(ci.estimate for ci in upper)
    return dict(
        verdict="fails" if fails else "holds",
        measured=worst,
        expected=bound,
        interval=max(upper, key=lambda c: c.estimate).as_list(),
        summary=f"accumulating (lam = 1, {runs} runs, t <= {steps}): n E||mu_t - mu||^2 / tr Sigma "
        f"peaks at {worst:.3f} <= pi^2/6 = {bound:.3f} (covariance refit); with known covariance "
        "and for least squares on a fixed design it equals sum_{k<=t+1} 1/k^2 within its "
        "intervals"
        + (
            ""
            if not fails
            else f"; FAILS: over the bound at t = {over}, exact "
            f"forms off at {[(lab, bad) for lab, _, bad in checks if bad]}"
        ),
        details=dict(
            n=n,
            runs=runs,
            steps=steps,
            harmonic=harmonic.tolist(),
            mle=[ci.estimate for ci in upper],
            known_cov=[ci.estimate for ci in checks[0][1]],
            regression=[ci.estimate for ci in checks[1][1]],
        ),
        counterexample=None
        if not fails
        else dict(
            over_bound_t=over,
            exact_form_off=[
                dict(model=lab, t=bad, intervals=[iv[t].as_list() for t in bad])
                for lab, iv, bad in checks
                if bad
            ],
        ),
    )


@register(
    "lit-accumulate-bound",
    "Accumulating real and synthetic data (lam = 1): the error of the mean stays below "
    "(pi^2/6) tr(Sigma)/n for every t (exactly sum_{k<=t+1} 1/k^2 tr(Sigma)/n with known "
    "covariance), and least squares on a fixed design likewise (sigma^2 d/(n-d-1) factor)",
    "Gerstgrasser et al. 2024 (Thm 2); Dey and Donoho 2024",
    GROUP,
)
def check_accumulate(ctx):
    return accumulate_bound(ctx)


# ----------------------------------------------------------------------------------------------
# 3. linear regression, fully synthetic (Dohmatob et al. 2024)


def regression_growth(ctx, model=LinearRegressionOLS) -> dict:
    rng = ctx.rng("lit-regression-linear")
    runs, steps, d, n, sigma = ctx.size(3000, 8000, 30000), 10, 4, 20, 1.0
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
    expected = sigma**2 * d / (n - d - 1) * (np.arange(steps + 1) + 1)
    intervals, bad = _compare(err, expected, steps + 1)
    slope = float(np.polyfit(np.arange(steps + 1), err.mean(axis=0), 1)[0])
    return dict(
        verdict="fails" if bad else "holds",
        measured=intervals[-1].estimate,
        expected=float(expected[-1]),
        interval=intervals[-1].as_list(),
        summary=f"d = {d}, n = {n}, {runs} runs: the test error E||w_t - w*||^2 grows linearly, "
        f"slope {slope:.4f} per generation vs sigma^2 d/(n-d-1) = {expected[0]:.4f}"
        + ("" if not bad else f"; closed form outside its interval at t = {bad}"),
        details=dict(
            mean_error=[ci.estimate for ci in intervals], expected=expected.tolist(), slope=slope
        ),
        counterexample=dict(t=bad[0], interval=intervals[bad[0]].as_list()) if bad else None,
    )


@register(
    "lit-regression-linear-growth",
    "Least squares refit on labels from the previous model with fresh Gaussian designs: "
    "E||w_t - w*||^2 = (t + 1) sigma^2 d / (n - d - 1), linear in the generation t",
    "Dohmatob et al. 2024 (Model collapse demystified, Thm 4.1)",
    GROUP,
)
def check_regression(ctx):
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
    n, p, runs = 20, 0.2, ctx.size(3000, 8000, 30000)
    steps = 20 * n  # P(not absorbed) <= (1 - 1/n)^steps ~ 1e-9
    rng = ctx.rng("lit-bernoulli")
    real = PointSet((rng.random((runs, n, 1)) < p).astype(float))
    rec, ps = _track("p")
    retrain(model(), real, Policy("mix", math.inf), steps, rng, on_iteration=rec)
    path = np.stack(ps, axis=1)
    checkpoints = [0, n // 2, n, 3 * n]
    intervals, bad = _compare(path[:, checkpoints], np.full(len(checkpoints), p), 6)
    lost = path[:, -1] == 0
    loss_exact, time_exact = wright_fisher(n, p)
    loss_ci = binomial_interval(int(lost.sum()), runs, LEVEL, 6)
    hit = np.argmax(path == 0, axis=1)
    kimura = -2 * n * p * math.log(p) / (1 - p)
    bad_loss = not (loss_ci.contains(1 - p) and loss_ci.contains(loss_exact))
    if lost.sum() < 2:  # nothing was lost: there is no time to loss to compare
        time_ci = Interval(math.nan, math.nan, math.nan, LEVEL)
        bad_time = True
    else:
        time_ci = mean_interval(hit[lost].astype(float), LEVEL, 6)
        bad_time = not time_ci.contains(time_exact)
    fails = bool(bad) or bad_loss or bad_time
    return dict(
        verdict="fails" if fails else "holds",
        measured=loss_ci.estimate,
        expected=1 - p,
        interval=loss_ci.as_list(),
        summary=f"n = {n}, p = {p}, {runs} runs: E p_t = p at t in {checkpoints} "
        f"({'ok' if not bad else 'NO'}); lost in {loss_ci.estimate:.3f} of runs (1 - p = {1 - p}, "
        f"chain {loss_exact:.4f}); mean time to loss {time_ci.estimate:.1f} generations "
        f"(exact chain {time_exact:.1f}; Kimura's diffusion approximation -2 n p ln p/(1-p) = "
        f"{kimura:.1f}, {100 * (kimura / time_exact - 1):+.0f}%): linear in the count n p up to "
        "the log factor",
        details=dict(
            n=n,
            p=p,
            runs=runs,
            mean_p=[ci.estimate for ci in intervals],
            loss_exact=loss_exact,
            time_exact=time_exact,
            time_mc=time_ci.estimate,
            time_interval=time_ci.as_list(),
            time_kimura=kimura,
        ),
        counterexample=None
        if not fails
        else dict(
            martingale_bad_t=[checkpoints[j] for j in bad],
            loss=loss_ci.as_list(),
            time=time_ci.as_list(),
        ),
    )


@register(
    "lit-bernoulli-martingale",
    "Fully synthetic frequency refits of a Bernoulli(p): p_t is a martingale, the symbol is lost "
    "with probability 1 - p, and the expected time to lose it matches the Wright-Fisher chain "
    "(about -2 n p ln p / (1 - p) generations)",
    "Suresh et al. 2024 (Rate of model collapse in recursive training); Kimura and Ohta 1969",
    GROUP,
)
def check_bernoulli(ctx):
    return bernoulli_collapse(ctx)


# ----------------------------------------------------------------------------------------------
# 5. Gaussian tail bound (Suresh et al. 2024)


def gaussian_tail(ctx, model=GaussianMLE) -> dict:
    n, ratio, runs = 10, 0.5, ctx.size(4000, 10000, 40000)
    ks = np.array([20, 40, 80, 120])
    rng = ctx.rng("lit-gaussian-tail")
    real = PointSet(rng.standard_normal((runs, n, 1)))
    rec, sig = _track("cov", lambda c: np.sqrt(c[:, 0, 0]))
    retrain(model(ddof=1), real, Policy("mix", math.inf), int(ks[-1]), rng, on_iteration=rec)
    sig = np.stack(sig, axis=1)
    above = sig[:, ks] > ratio * sig[:, :1]
    bound = np.exp(-ks / (4 * n)) / ratio
    cis = [binomial_interval(int(above[:, j].sum()), runs, LEVEL, ks.size) for j in range(ks.size)]
    over = [int(ks[j]) for j, ci in enumerate(cis) if ci.lo > bound[j]]
    alpha = mean_chi(n - 1) / math.sqrt(n - 1)
    return dict(
        verdict="fails" if over else "holds",
        measured=cis[-1].estimate,
        expected=float(bound[-1]),
        interval=cis[-1].as_list(),
        summary=f"n = {n}, {runs} runs: P(sigma_k > sigma_0/2) = "
        + ", ".join(f"{ci.estimate:.4f}" for ci in cis)
        + f" at k = {ks.tolist()} vs the bound 2 exp(-k/(4n)) = "
        + ", ".join(f"{b:.3f}" for b in bound)
        + f" (it follows from Markov's inequality as alpha(n) = {alpha:.4f} <= exp(-1/(4n)) = "
        f"{math.exp(-1 / (4 * n)):.4f})" + ("" if not over else f"; EXCEEDED at k = {over}"),
        details=dict(
            k=ks.tolist(),
            probability=[ci.estimate for ci in cis],
            bound=bound.tolist(),
            alpha=alpha,
            markov_condition=bool(alpha <= math.exp(-1 / (4 * n))),
        ),
        counterexample=dict(k=over, intervals=[c.as_list() for c in cis]) if over else None,
    )


@register(
    "lit-gaussian-tail",
    "Fully synthetic 1D Gaussian refits: P(sigma_k > eps) <= (sigma_0/eps) exp(-k/(4n))",
    "Suresh et al. 2024 (Rate of model collapse in recursive training)",
    GROUP,
)
def check_gaussian_tail(ctx):
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
    column per weight: shape (R, len(weights)), each column from its own retrain."""
    runs, steps = ctx.size(2000, 5000, 20000), 60
    rng = ctx.rng("lit-golden-ratio")

    def fresh(m, g):
        return PointSet(np.stack([sigma * g.standard_normal((runs, m)), np.ones((runs, m))], 2))

    measured = []
    for w in weights:
        rec, mus = _track("mu", lambda mu: mu**2)
        policy = Policy("fresh", lam)
        retrain(model(w, sigma), fresh(n, rng), policy, steps, rng, rec, fresh_source=fresh)
        measured.append(np.stack(mus, axis=1)[:, steps // 2 :].mean(axis=1))
    return np.stack(measured, axis=1)


def golden_ratio(ctx, model=WeightedMean) -> dict:
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
    measured = stationary_errors(ctx, model, weights, k, n, sigma)
    samples = measured
    expected = stationary_mse(np.array(weights), k, n, sigma)
    intervals, bad = _compare(samples, expected, len(weights) + 1)
    gain = mean_interval(samples[:, 1] - samples[:, 0], LEVEL, len(weights) + 1)
    fails = bool(bad) or abs(numeric - w_opt) > 1e-6 or gain.hi < 0
    return dict(
        verdict="fails" if fails else "holds",
        measured=intervals[0].estimate,
        expected=float(expected[0]),
        interval=intervals[0].as_list(),
        summary=f"fresh data (n = {n} real + lam n synthetic, lam = {k:g}): the weight minimising "
        f"the stationary error is {numeric:.6f} = w* = 1/phi = {1 / GOLDEN:.6f}; "
        f"stationary n E(mu - mu*)^2 = {n * intervals[0].estimate:.4f} at w* (closed form "
        f"{n * expected[0]:.4f}), {n * intervals[1].estimate:.4f} with plain pooling "
        f"w = 1/(1+k) ({n * expected[1]:.4f})"
        + (
            ""
            if not bad
            else f"; closed form outside its interval for w = {[round(weights[j], 4) for j in bad]}"
        ),
        details=dict(
            weights=list(weights),
            mse=[ci.estimate for ci in intervals],
            closed_form=expected.tolist(),
            argmin_numeric=numeric,
            w_star=w_opt,
            gain_over_pooling=gain.as_list(),
        ),
        counterexample=dict(weights=[weights[j] for j in bad]) if bad else None,
    )


@register(
    "lit-golden-ratio",
    "Fresh real data each generation plus synthetic data from the previous model: weighting the "
    "real data by w* = (sqrt(k^2+4k) - k)/2, k = 1/lam (1/phi for lam = 1) minimises the "
    "stationary error (w^2 + (1-w)^2/lam)/(1 - (1-w)^2) sigma^2/n, below plain pooling",
    "He, Xu and Cheng 2025 (A golden ratio weighting prevents model collapse)",
    GROUP,
)
def check_golden_ratio(ctx):
    return golden_ratio(ctx)
