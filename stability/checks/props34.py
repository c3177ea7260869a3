"""Checks of the retraining operator G_lambda (eqs 2, 3, 9) and Propositions 3-4.

They run on every default (family, data) pair of stability.families: the Gaussian family with
Gaussian data (eps = 0) and misspecified pairs (a Gaussian, a Student-t and a two-means mixture
fitted to a skewed bimodal p_data, eps > 0), the last two with Hessians not linear in x. Every
check takes the operators it measures as a parameter (the paper's by default;
`stability.family_checks` passes a researcher's own), so the `--family` checks are these same
checks. The helpers here (the operators, their constants, points near theta*, the cached
finite-difference Jacobian at theta*) are shared with the checks of Lemma E.1 and Theorem 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from stability import gaussian
from stability.checks import register
from stability.checks.verdict import Measured, equal, largest_error, result
from stability.families import GaussianFamily
from stability.operator import Operator, default_operators, maximise

GROUP = "props34"
LAMBDAS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0)
RADIUS = 0.05  # the neighbourhood of theta* the checks look in, for the paper's operators

Radius = Callable[[Operator], float]


@lru_cache(maxsize=1)
def operators() -> tuple[Operator, ...]:
    """The default operators, built once per process (sympy compiles their derivatives)."""
    return tuple(default_operators())


def resolve_operators(ops: Sequence[Operator] | None) -> tuple[Operator, ...]:
    """The operators a check measures: `ops`, or the paper's default ones when None."""
    return operators() if ops is None else tuple(ops)


def fixed_radius(op: Operator) -> float:
    """The radius of the neighbourhood of theta* for the paper's operators: `RADIUS`."""
    return RADIUS


def scaled_radius(op: Operator) -> float:
    """`RADIUS` times max(1, ||theta*||): a neighbourhood that scales with a researcher's
    parameters, whose theta* may lie far from the origin."""
    return RADIUS * max(1.0, float(np.linalg.norm(op.theta_star())))


# Finite-difference Jacobians at theta* by (id(operator), lambda); each entry keeps its operator,
# so that the id is not reused while the entry lives.
_JACOBIANS: dict[tuple[int, float], tuple[Operator, np.ndarray]] = {}


def jacobian_at_star(op: Operator, lam: float) -> np.ndarray:
    """Central finite-difference Jacobian of G_lambda^inf at theta*, shape (p, p).

    The independent measurement that eqs (76), (78) and (11) are compared with. Cached per
    (operator, lambda): Lemma E.1 and Theorem 1 measure it at the same points.
    """
    key = (id(op), float(lam))
    hit = _JACOBIANS.get(key)
    if hit is None or hit[0] is not op:
        if len(_JACOBIANS) >= 256:
            _JACOBIANS.pop(next(iter(_JACOBIANS)))
        hit = _JACOBIANS[key] = (op, op.jacobian_fd(lam))
    return hit[1]


def constants(op: Operator) -> dict:
    """theta* (shape (p,)), alpha (Assumption 2), L (Assumption 1), eps (eq 8) and eps L.

    eps (and eps L) is NaN where it is not computed (multivariate misspecified data): the
    claims that need it are then inconclusive.
    """
    eps = op.eps_or_none()
    eps = math.nan if eps is None else eps
    return dict(
        family=op.name,
        theta_star=op.theta_star(),
        alpha=op.alpha(),
        L=op.lipschitz(),
        eps=eps,
        eps_L=eps * op.lipschitz(),
    )


def near(op: Operator, rng: np.random.Generator, radius: float) -> np.ndarray:
    """A valid point at distance `radius` from theta* in a random direction, shape (p,)."""
    ts = op.theta_star()
    for _ in range(200):
        u = rng.standard_normal(ts.size)
        cand = ts + radius * u / np.linalg.norm(u)
        if op.family.valid(cand):
            return cand
    raise RuntimeError("could not find a valid point near theta*")


def synthetic_points(lam: float, n: int) -> int:
    """floor(lam n) samples per refit, n when lam = inf (Algorithm 1), written here so that
    the checks do not share the loop's own count."""
    return n if math.isinf(lam) else int(math.floor(lam * n + 1e-9))


def mle_step_moments(mu, cov, lam, n, data_mean, data_cov):
    """E[mu'] and E[Sigma'] of one maximum-likelihood refit (eq 2) in closed form.

    The refit pools n points of N(data_mean, data_cov) and k = floor(lam n) of N(mu, cov)
    (n of them when lam = inf); with N points of means m_i and covariances C_i and their mean
    m = sum m_i / N, the scatter has expectation (1 - 1/N) sum C_i + sum (m_i - m)(m_i - m)^T,
    and the maximum-likelihood covariance is the scatter over N.

    Parameters
    ----------
    mu, data_mean : numpy.ndarray, shape (d,)
    cov, data_cov : numpy.ndarray, shape (d, d)

    Returns
    -------
    (mean, cov) : numpy.ndarray, shapes (d,) and (d, d)
    """
    k = synthetic_points(lam, n)
    n_real = 0 if math.isinf(lam) else n
    big_n = n_real + k
    m = (n_real * data_mean + k * mu) / big_n
    scatter = (1 - 1 / big_n) * (n_real * data_cov + k * cov)
    scatter = scatter + n_real * np.outer(data_mean - m, data_mean - m)
    scatter = scatter + k * np.outer(mu - m, mu - m)
    return m, scatter / big_n


def mle_step_draws(mu, cov, lam, n, data_mean, data_cov, draws, rng):
    """One maximum-likelihood refit simulated by plain draws, independent of stability.gaussian.

    Returns the refitted (means (draws, d), covariances (draws, d, d)): the mean of the pooled
    points and their second moment minus the outer product of the mean (eq 2).
    """
    d = mu.shape[0]
    k = synthetic_points(lam, n)
    synth = mu + rng.standard_normal((draws, k, d)) @ np.linalg.cholesky(cov).T
    if math.isinf(lam):
        pts = synth
    else:
        real = data_mean + rng.standard_normal((draws, n, d)) @ np.linalg.cholesky(data_cov).T
        pts = np.concatenate([real, synth], axis=1)
    m = np.mean(pts, axis=1)
    second = np.einsum("rni,rnj->rij", pts, pts) / pts.shape[1]
    return m, second - np.einsum("ri,rj->rij", m, m)


def moment_claims(means, covs, target_mean, target_cov, tol, **case) -> list[Measured]:
    """Each entry of the average refit (mean (R, d), cov (R, d, d)) equals its closed form,
    to within tol times the largest entry of the closed-form covariance."""
    r, d = means.shape
    scale = float(np.abs(target_cov).max())
    out = []
    for i in range(d):
        x = means[:, i]
        out.append(
            equal(
                x.mean(),
                target_mean[i],
                tol * scale,
                x.std(ddof=1) / math.sqrt(r),
                **case,
                entry=f"mu[{i}]",
            )
        )
        for j in range(i, d):
            x = covs[:, i, j]
            out.append(
                equal(
                    x.mean(),
                    target_cov[i, j],
                    tol * scale,
                    x.std(ddof=1) / math.sqrt(r),
                    **case,
                    entry=f"Sigma[{i},{j}]",
                )
            )
    return out


def _data_moments(op):
    x, w = op.data.nodes()
    m = w @ x
    return m, np.einsum("n,ni,nj->ij", w, x - m, x - m)


def _gaussian_ops(ops):
    return [op for op in resolve_operators(ops) if isinstance(op.family, GaussianFamily)]


def _exact_maps(rng, ops):
    """Numerical G^inf and G^n against their closed forms (moment matching, sample moments)."""
    claims, rows = [], []
    for op in _gaussian_ops(ops):
        d = op.family.dim
        dm, dc = _data_moments(op)
        for lam in (0.5, 2.0):
            theta = near(op, rng, 0.3)
            mu, cov = gaussian.from_theta(theta, d)
            closed = gaussian.to_theta(*gaussian.g_inf(mu, cov, lam, dm, dc))
            err_inf = float(np.abs(op.g_inf(theta, lam) - closed).max())
            # One finite-sample step with the same draws: numerical maximiser vs sample moments.
            real = op.data.sample(rng, 50)
            seed = int(rng.integers(2**31))
            num_n = op.g_n(theta, lam, real, np.random.default_rng(seed))
            synth = op.family.sample(np.random.default_rng(seed), int(lam * 50), theta)
            pts = np.concatenate([real, synth])
            c = pts - pts.mean(0)
            closed_n = gaussian.to_theta(pts.mean(0), c.T @ c / len(pts))
            err_n = float(np.abs(num_n - closed_n).max() / max(1.0, np.abs(closed_n).max()))
            case = dict(family=op.name, lam=lam)
            claims.append(Measured(err_inf, 1e-8, case=dict(case, map="G^inf")))
            claims.append(Measured(err_n, 1e-8, case=dict(case, map="G^n")))
            rows.append(dict(case, err_g_inf=err_inf, err_g_n=err_n))
    return claims, rows


@register(
    "operator-gaussian",
    "For the Gaussian family G_lambda^inf (eq 9) is the moment matching of (p_data + lam p_theta)"
    "/(1 + lam) and G_lambda^n (eqs 2-3) the sample mean/covariance: numerical maximisation "
    "equals both closed forms; the batched refit of stability.gaussian has the closed-form "
    "expectation of the maximum-likelihood refit (every entry to within 3%); and "
    "E||G^n - G^inf|| ~ n^-1/2 (slope within 0.1 of -1/2)",
    "eqs (2), (3), (9)",
    GROUP,
)
def check_operator_gaussian(ctx, ops: Sequence[Operator] | None = None) -> dict:
    """G_lambda^inf (eq 9) and G_lambda^n (eqs 2-3) of the Gaussian family in closed form.

    Numerical maximisation against moment matching and sample moments; the batched refit of
    `stability.gaussian.g_n_batch` against the closed-form expectation of one maximum-likelihood
    refit (`mle_step_moments`, controlled by plain draws); and the n^-1/2 rate of
    E||G^n - G^inf||.

    Parameters
    ----------
    ctx : Context
        Seeds the draws; the mode sets their number.
    ops : sequence of Operator, optional
        Its Gaussian-family members are measured; default `operators()`.

    Returns
    -------
    dict
        `CheckResult` fields: Monte-Carlo claims with standard errors, plain draws as controls.
    """
    rng = ctx.rng("operator-gaussian")
    claims, rows = _exact_maps(rng, ops)
    # Expectation of one batched refit at a small pool (n = 5), where the 1/N of the
    # maximum-likelihood covariance is a 10-20% effect; controls: plain draws agree with it.
    op = _gaussian_ops(ops)[0]
    dm, dc = _data_moments(op)
    mu, cov = gaussian.from_theta(near(op, rng, 0.3), op.family.dim)
    draws = ctx.size(40000, 80000, 200000)
    controls, moment_rows = [], []
    for lam in (1.0, math.inf):
        tm, tc = mle_step_moments(mu, cov, lam, 5, dm, dc)
        real = dm + rng.standard_normal((draws, 5, dm.size)) @ np.linalg.cholesky(dc).T
        bm, bc = gaussian.g_n_batch(
            np.repeat(mu[None], draws, 0), np.repeat(cov[None], draws, 0), lam, real, rng
        )
        claims += moment_claims(bm, bc, tm, tc, 0.03, lam=lam, n=5, simulator="g_n_batch")
        im, ic = mle_step_draws(mu, cov, lam, 5, dm, dc, draws, rng)
        controls += moment_claims(im, ic, tm, tc, 0.03, lam=lam, n=5, simulator="plain draws")
        moment_rows.append(
            dict(lam=lam, closed_form_cov=tc, g_n_batch_cov=bc.mean(0), plain_draws_cov=ic.mean(0))
        )
    slope, slope_se, devs = _rate(ctx, op, mu, cov, rng)
    claims.append(equal(slope, -0.5, 0.1, slope_se, what="rate exponent"))
    worst = max(max(r["err_g_inf"], r["err_g_n"]) for r in rows)
    return result(
        claims,
        controls=controls,
        summary=f"numerical = closed form to {worst:.1e}; the batched refit's mean and covariance "
        f"match the closed-form expectation of the maximum-likelihood refit (n = 5, lam = 1 and "
        f"inf); mean ||G^n - G^inf|| ~ n^{slope:.3f} +- {slope_se:.3f} (expected n^-0.5)",
        details=dict(
            rows=rows, moments=moment_rows, rate_devs=devs, rate_slope=slope, rate_slope_se=slope_se
        ),
    )


def _rate(ctx, op, mu, cov, rng):
    """Slope of log E||G^n - G^inf|| against log n (batched refits, lam = 1) and its standard
    error (delta method from each mean's standard error)."""
    ginf = gaussian.to_theta(*gaussian.g_inf(mu, cov, 1.0, *_data_moments(op)))
    ns = np.array([100, 1000, 10000])
    draws = ctx.size(100, 200, 400)
    logs, var = [], []
    for n in ns:
        real = np.stack([op.data.sample(rng, int(n)) for _ in range(draws)])
        m, s = gaussian.g_n_batch(
            np.repeat(mu[None], draws, 0), np.repeat(cov[None], draws, 0), 1.0, real, rng
        )
        dev = np.linalg.norm(gaussian.to_theta(m, s) - ginf, axis=1)
        logs.append(math.log(dev.mean()))
        var.append((dev.std(ddof=1) / dev.mean()) ** 2 / draws)
    x = np.log(ns) - np.log(ns).mean()
    slope = float(x @ np.array(logs) / (x @ x))
    se = float(math.sqrt(np.sum(x**2 * np.array(var))) / (x @ x))
    return slope, se, [math.exp(v) for v in logs]


def panel_edges(half_width: float = 400.0, panels: int = 4000) -> np.ndarray:
    """Edges of the sinh-spaced panels of `composite_rule` on [-w, w], shape (panels + 1,).

    Parameters
    ----------
    half_width : float
        w, the rule covers [-w, w].
    panels : int
        Number of panels.

    Returns
    -------
    numpy.ndarray, shape (panels + 1,)
        sinh of equally spaced points of [-arcsinh w, arcsinh w].
    """
    u = np.linspace(-np.arcsinh(half_width), np.arcsinh(half_width), panels + 1)
    return np.sinh(u)


def composite_rule(half_width: float = 400.0, panels: int = 4000, order: int = 8):
    """Composite Gauss-Legendre rule on [-w, w] with sinh-spaced panels, nodes/weights (K,).

    Dense near the bulk of the distributions and coarse in the tails; an evaluation path
    independent of the rules the operator uses (Gauss-Hermite, tan substitution).
    """
    edges = panel_edges(half_width, panels)
    z, w = np.polynomial.legendre.leggauss(order)
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    half = 0.5 * (edges[1:] - edges[:-1])[:, None]
    return (mid + half * z).ravel(), (half * w).ravel()


def _first_order_composite(op: Operator, theta: np.ndarray, lam: float, panels: int = 4000):
    """theta' -> grad_theta' H(theta, theta') integrating score x density on a composite rule."""
    x, w = composite_rule(panels=panels)
    weight = w * (op.data.pdf(x) + lam * np.exp(op.family.logpdf(x, theta)))

    def grad(tp):
        return weight @ op.family.score(x, tp)

    return grad


@register(
    "operator-nonlinear",
    "G_lambda^inf (eq 9) for families whose Hessian is not linear in x (Student-t, two-means "
    "mixture) fitted to non-model data: Newton on the operator's quadrature agrees with a root "
    "(MINPACK) of the first-order condition integrated on an independent composite rule, and the "
    "result is a strict local maximum",
    "eqs (2), (3), (9)",
    GROUP,
)
def check_operator_nonlinear(ctx, ops: Sequence[Operator] | None = None) -> dict:
    """G_lambda^inf (eq 9) of 1D families whose Hessian is not linear in x, two ways.

    Newton on the operator's quadrature against a MINPACK root of the first-order condition
    grad_theta' H(theta, theta') = 0 integrated on `composite_rule` (controlled by halving its
    panels), and the Hessian of H at the result negative definite.

    Parameters
    ----------
    ctx : Context
        Seeds the points; the mode sets the lambdas.
    ops : sequence of Operator, optional
        Its 1D members with `hessian_dx` are measured; default `operators()`.

    Returns
    -------
    dict
        `CheckResult` fields; the composite rule's own error is a control.
    """
    rng = ctx.rng("operator-nonlinear")
    rows, claims, controls = [], [], []
    for op in resolve_operators(ops):
        if op.family.dim != 1 or not hasattr(op.family, "hessian_dx"):
            continue
        for lam in ctx.size((1.0,), (0.5, 2.0), (0.5, 2.0, 5.0)):
            row = _newton_against_minpack(op, near(op, rng, 0.1), lam)
            case = dict(family=op.name, lam=lam)
            claims.append(
                Measured(row["diff"], 1e-7, case=dict(case, what="Newton = MINPACK root"))
            )
            claims.append(
                Measured(row["top_hessian_eig"], 0.0, case=dict(case, what="strict local maximum"))
            )
            controls.append(
                Measured(row["composite_rule_error"], 1e-8, case=dict(case, what="composite rule"))
            )
            rows.append(dict(case, **row))
    strict = all(r["top_hessian_eig"] < 0 for r in rows)
    return largest_error(
        claims,
        rows,
        "diff",
        "Newton (operator quadrature) and a MINPACK root of the gradient (composite Gauss-Legendre) "
        f"agree to {{worst:.1e}}; Hessian negative definite at every G(theta): {strict}",
        controls=controls,
    )


def _newton_against_minpack(op, theta, lam):
    """G_lambda^inf(theta) by Newton and by MINPACK on the composite rule, and the top
    eigenvalue of the Hessian of H(theta, .) at it."""
    from scipy.optimize import root

    g = op.g_inf(theta, lam)
    res = root(_first_order_composite(op, theta, lam), theta, method="hybr", tol=1e-13)
    # The composite rule's own error, from halving its panels.
    coarse = root(_first_order_composite(op, theta, lam, 2000), theta, method="hybr", tol=1e-13)
    xd, wd = op.data.nodes()
    xm, wm = op.family.nodes(theta)
    hess = np.einsum("n,nij->ij", wd, op.family.hessian(xd, g)) + lam * np.einsum(
        "n,nij->ij", wm, op.family.hessian(xm, g)
    )
    return dict(
        newton=g,
        root_composite=res.x,
        diff=float(np.abs(res.x - g).max()),
        composite_rule_error=float(np.abs(res.x - coarse.x).max()),
        top_hessian_eig=float(np.linalg.eigvalsh(hess)[-1]),
    )


@register(
    "prop3-unique-maximiser",
    "If eps L < alpha, for theta near theta* there is a unique local maximiser of H(theta, .) in "
    "a neighbourhood: optimisation from many starts reaches one point",
    "Proposition 3",
    GROUP,
)
def check_prop3(ctx, ops: Sequence[Operator] | None = None, radius: Radius = fixed_radius) -> dict:
    """Proposition 3: if eps L < alpha, H(theta, .) has one local maximiser near theta*.

    For theta at distance r from theta* (r = `radius(op)`) and lambda in {0.5, 2}, Newton on
    H(theta, .) from starts at distances uniform in [r, 10 r] must reach G_lambda^inf(theta):
    the largest distance between an end point and it (the spread) is a claim (<= 1e-7) for
    each operator that meets the hypothesis eps L < alpha; the others are reported only.

    Parameters
    ----------
    ctx : Context
        Seeds the points; the mode sets the number of starts.
    ops : sequence of Operator, optional
        Default `operators()`.
    radius : callable, optional
        Operator -> r: `fixed_radius` (0.05), or `scaled_radius` for a researcher's family.

    Returns
    -------
    dict
        `CheckResult` fields; "inconclusive" when no operator meets the hypothesis.
    """
    rng = ctx.rng("prop3")
    starts = ctx.size(8, 24, 64)
    ops = resolve_operators(ops)
    rows = [row for op in ops for row in _prop3_rows(op, rng, starts, radius(op))]
    with_hyp = [r for r in rows if r["hypothesis_eps_L_lt_alpha"]]
    claims = [
        Measured(r["spread"], 1e-7, case=dict(family=r["family"], lam=r["lam"])) for r in with_hyp
    ] or [Measured(math.nan, 0.0, case=dict(why="no family meets eps L < alpha"))]
    nonlinear = sorted({r["family"] for r in with_hyp if not r["family"].startswith("gaussian")})
    beyond = [r for r in rows if not r["hypothesis_eps_L_lt_alpha"]]
    beyond_unique = all(r["spread"] < 1e-7 for r in beyond)
    head = max(rows, key=lambda r: r["spread"])
    return result(
        claims,
        summary=f"{starts} starts within radius {max(10 * radius(op) for op in ops):.3g} reach one "
        f"maximiser (largest spread {head['spread']:.1e}) for every family meeting eps L < alpha "
        f"(nonlinear ones: {', '.join(nonlinear) or 'none'})"
        + (
            f"; families outside the hypothesis ({', '.join(sorted({r['family'] for r in beyond}))}) "
            f"{'also' if beyond_unique else 'do not'} show a single maximiser"
            if beyond
            else ""
        ),
        details=dict(rows=rows),
        measured=head["spread"],
        expected=0.0,
    )


def _prop3_rows(op, rng, starts, r):
    """One row per lambda: the spread of the maximisers of H(theta, .) reached from `starts`."""
    c = constants(op)
    rows = []
    for lam in (0.5, 2.0):
        theta = near(op, rng, r)
        target = op.g_inf(theta, lam)
        xd, wd = op.data.nodes()
        xm, wm = op.family.nodes(theta)
        x = np.concatenate([xd, xm])
        w = np.concatenate([wd, lam * wm])
        ends = np.array(
            [
                maximise(op.family, near(op, rng, float(rng.uniform(r, 10 * r))), x, w, tol=1e-12)
                for _ in range(starts)
            ]
        )
        rows.append(
            dict(
                family=op.name,
                lam=lam,
                spread=float(np.max(np.linalg.norm(ends - target, axis=1))),
                hypothesis_eps_L_lt_alpha=bool(c["eps_L"] < c["alpha"]),
                eps_L=c["eps_L"],
                alpha=c["alpha"],
                starts=starts,
            )
        )
    return rows


@register(
    "prop4-fixed-point",
    "theta* = argmax E_data[log p_theta] is a fixed point of G_lambda^inf for every lambda > 0",
    "Proposition 4, eq (10)",
    GROUP,
)
def check_prop4(ctx, ops: Sequence[Operator] | None = None) -> dict:
    """Proposition 4, eq (10): G_lambda^inf(theta*) = theta* for every lambda > 0.

    Measured: ||G_lambda^inf(theta*) - theta*|| for lambda in `LAMBDAS`, each a claim <= 1e-8.

    Parameters
    ----------
    ctx : Context
        Not used: every distance is computed exactly.
    ops : sequence of Operator, optional
        Default `operators()`, the paper's five (family, data) pairs.

    Returns
    -------
    dict
        `CheckResult` fields, one claim per (operator, lambda).
    """
    ops = resolve_operators(ops)
    rows, claims = [], []
    for op in ops:
        ts = op.theta_star()
        for lam in LAMBDAS:
            err = float(np.linalg.norm(op.g_inf(ts, lam) - ts))
            rows.append(dict(family=op.name, lam=lam, distance=err))
            claims.append(Measured(err, 1e-8, case=dict(family=op.name, lam=lam)))
    families = f"{len(ops)} famil{'y' if len(ops) == 1 else 'ies'}"
    return largest_error(
        claims,
        rows,
        "distance",
        f"max ||G_lambda(theta*) - theta*|| = {{worst:.1e}} over {families} and lambda in "
        f"{list(LAMBDAS)}",
    )
