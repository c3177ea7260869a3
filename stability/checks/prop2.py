"""Checks of Proposition 2 (Gaussian family: gradient, Hessian, curvature, Lipschitz), eqs (58)-(60)."""

from __future__ import annotations

import numpy as np

from stability import gaussian as G
from stability.checks import register
from stability.checks.verdict import Measured, result
from stability.linalg import inv_spd, random_spd, svec_basis

GROUP = "prop2"


def _dims(ctx):
    return ctx.size((1, 2), (1, 2), (1, 2, 3))


def _random_point(d, rng, cond=1e3):
    prec = random_spd(d, cond, rng)
    mu = rng.standard_normal(d)
    x = mu + rng.standard_normal(d) * 2
    return x, mu, prec


@register(
    "prop2-derivatives",
    "gradient and Hessian of log N(x; mu, Sigma) in theta = (mu, Sigma^-1): closed form (numpy, "
    "any d) equals symbolic differentiation (sympy) in full, svec and vech coordinates",
    "Proposition 2, eqs (58)-(60)",
    GROUP,
)
def check_derivatives(ctx):
    """Proposition 2, eqs (58)-(60): closed-form score and Hessian of log N(x; mu, Sigma) in
    theta = (mu, Sigma^-1) against sympy, in full, svec and vech coordinates.

    Design: 5 random points (precision of condition 1e3) per dimension d in {1, 2} ({1, 2, 3}
    in --thorough); the largest relative error must be below 1e-10 (exact computation).

    Parameters
    ----------
    ctx : stability.checks.Context
        Mode (sizes) and seed.

    Returns
    -------
    dict
        The CheckResult fields, from `stability.checks.verdict.result`.
    """
    rng = ctx.rng("prop2-derivatives")
    rows, claims = [], []
    for d in _dims(ctx):
        for coords in G.COORDS:
            g_sym, h_sym = G.sympy_score_hessian(d, coords)
            err = 0.0
            for _ in range(5):
                x, mu, prec = _random_point(d, rng)
                scale = max(1.0, np.abs(h_sym(x, mu, prec)).max())
                eg = np.abs(g_sym(x, mu, prec) - G.score(x[None], mu, prec, coords)[0]).max()
                eh = np.abs(h_sym(x, mu, prec) - G.hessian(x[None], mu, prec, coords)[0]).max()
                err = max(err, float(max(eg, eh) / scale))
            rows.append(dict(d=d, coords=coords, max_rel_err=err))
            claims.append(Measured(err, 1e-10, case=dict(d=d, coords=coords)))
    worst = max(r["max_rel_err"] for r in rows)
    return result(
        claims,
        summary=f"closed form = sympy to {worst:.1e} (relative) for d in {_dims(ctx)}, 3 coordinate "
        "conventions",
        details=dict(rows=rows),
        measured=worst,
        expected=0.0,
    )


def _paper59_errors(d, x, mu, prec):
    """Distance between printed eq (59) and the true gradient in each parametrisation."""
    true_p, _ = G.sympy_score_hessian(d, "full", "precision")
    true_s, _ = G.sympy_score_hessian(d, "full", "covariance")
    printed = G.paper_eq59_gradient(x, mu, prec)
    gp = true_p(x, mu, prec)
    gs = true_s(x, mu, inv_spd(prec))
    return dict(
        precision_mu_block=float(np.abs(printed[:d] - gp[:d]).max()),
        precision_matrix_block=float(np.abs(printed[d:] - gp[d:]).max()),
        covariance_mu_block=float(np.abs(printed[:d] - gs[:d]).max()),
        covariance_matrix_block=float(np.abs(printed[d:] - gs[d:]).max()),
    )


@register(
    "prop2-eq59",
    "eq (59) as printed, -grad log p = (Sigma^-1 (mu - x), (x - mu)(x - mu)^T/2 - Sigma), is the "
    "gradient in theta = (mu, Sigma^-1) (or in (mu, Sigma))",
    "Proposition 2 proof, eq (59)",
    GROUP,
)
def check_eq59(ctx):
    """Eq (59) as printed against the true gradient (sympy) in (mu, Sigma^-1) and (mu, Sigma).

    Exact: the printed Sigma^-1 block misses a factor 1/2 (it fails); control: the toolkit's
    closed-form score equals sympy's gradient at the same points.

    Parameters
    ----------
    ctx : stability.checks.Context
        Mode (sizes) and seed.

    Returns
    -------
    dict
        The CheckResult fields, from `stability.checks.verdict.result`.
    """
    rng = ctx.rng("prop2-eq59")
    rows, claims, controls = [], [], []
    for d in _dims(ctx):
        x, mu, prec = _random_point(d, rng)
        row = dict(d=d, **_paper59_errors(d, x, mu, prec))
        rows.append(row)
        claims.append(Measured(row["precision_mu_block"], 1e-9, case=dict(d=d, block="mu")))
        claims.append(Measured(row["precision_matrix_block"], 1e-9, case=dict(d=d, block="P")))
        # The instrument: the toolkit's closed-form score equals sympy's gradient here.
        true_p, _ = G.sympy_score_hessian(d, "full", "precision")
        ctrl = float(np.abs(true_p(x, mu, prec) - G.score(x[None], mu, prec, "full")[0]).max())
        controls.append(Measured(ctrl, 1e-9, case=dict(d=d, what="closed-form score = sympy")))
    # The simplest counterexample: d = 1, mu = 0, Sigma = 1, x = 0.
    one = np.zeros(1)
    ce = _paper59_errors(1, one, one, np.eye(1))
    printed = G.paper_eq59_gradient(one, one, np.eye(1))
    true = G.score(one[None], one, np.eye(1), "full")[0]
    # A score has mean zero under p_theta; the printed matrix block has mean Sigma/2 instead.
    sigma = 2.0
    printed_mean = sigma - 0.5 * sigma  # E[Sigma - v v^T/2] with E[v v^T] = Sigma
    mu_ok = all(r["precision_mu_block"] < 1e-12 for r in rows)
    return result(
        claims,
        controls=controls,
        summary="the mu-block is right in (mu, Sigma^-1)"
        * mu_ok
        + "; the Sigma^-1 block should be Sigma/2 - (x-mu)(x-mu)^T/2 (printed: Sigma - ...): "
        f"at d=1, mu=0, Sigma=1, x=0 the printed d/dP log p is {printed[1]:g}, the true one "
        f"{true[1]:g}. In (mu, Sigma) neither block matches. The printed block has mean Sigma/2 != 0 "
        "under p_theta, so it cannot be a score",
        details=dict(rows=rows, printed_matrix_block_mean_at_sigma_2=printed_mean),
        counterexample=dict(d=1, mu=0.0, Sigma=1.0, x=0.0, printed=printed, true=true, errors=ce),
        measured=float(printed[1]),
        expected=float(true[1]),
    )


@register(
    "prop2-eq60",
    "eq (60) as printed is the Hessian of log p in theta = (mu, Sigma^-1): exact on symmetric "
    "directions (the parameter space), and how it differs in other conventions",
    "Proposition 2 proof, eq (60)",
    GROUP,
)
def check_eq60(ctx):
    """Eq (60) as printed against the Hessian (sympy) in (mu, Sigma^-1), on the symmetric
    directions of the parameter space (svec basis), to 1e-10 (exact computation).

    Parameters
    ----------
    ctx : stability.checks.Context
        Mode (sizes) and seed.

    Returns
    -------
    dict
        The CheckResult fields, from `stability.checks.verdict.result`.
    """
    rng = ctx.rng("prop2-eq60")
    rows = []
    for d in _dims(ctx):
        x, mu, prec = _random_point(d, rng)
        printed = G.paper_eq60_hessian(x, mu, prec)
        _, h_full = G.sympy_score_hessian(d, "full", "precision")
        _, h_cov = G.sympy_score_hessian(d, "full", "covariance")
        true_full = h_full(x, mu, prec)
        true_cov = h_cov(x, mu, inv_spd(prec))
        # Restrict both to symmetric directions of the matrix block with the svec basis.
        basis = np.array([b.reshape(-1, order="F") for b in svec_basis(d)]).T
        emb = np.block([[np.eye(d), np.zeros((d, basis.shape[1]))], [np.zeros((d * d, d)), basis]])
        rows.append(
            dict(
                d=d,
                precision_symmetric_directions=float(
                    np.abs(emb.T @ (printed - true_full) @ emb).max()
                ),
                precision_all_d2_entries=float(np.abs(printed - true_full).max()),
                printed_is_symmetric=bool(np.allclose(printed, printed.T)),
                covariance_symmetric_directions=float(
                    np.abs(emb.T @ (printed - true_cov) @ emb).max()
                ),
            )
        )
    d2 = [r for r in rows if r["d"] >= 2]
    claims = [
        Measured(r["precision_symmetric_directions"], 1e-10, case=dict(d=r["d"])) for r in rows
    ]
    return result(
        claims,
        measured=max(r["precision_symmetric_directions"] for r in rows),
        expected=0.0,
        summary="eq (60) equals the Hessian in (mu, Sigma^-1) on symmetric directions"
        + (
            f"; as a d^2 x d^2 matrix (d >= 2) it is not symmetric and differs from the Hessian "
            f"in the d^2 free entries by {d2[0]['precision_all_d2_entries']:.3f} (the commutation "
            "matrix and the symmetrised mixed block); it is not the Hessian in (mu, Sigma)"
            if d2
            else ""
        ),
        details=dict(rows=rows),
    )


@register(
    "prop2-negative-definite",
    "E_{x~p_theta}[Hessian_theta log p_theta(x)] is negative definite, with top eigenvalue -alpha, "
    "alpha = min(lambda_min(Sigma^-1), lambda_min(Sigma)^2/2) (Assumption 2)",
    "Proposition 2; Assumption 2",
    GROUP,
)
def check_negative_definite(ctx):
    """Proposition 2 / Assumption 2: E[Hessian log p_theta] is negative definite with top
    eigenvalue -alpha, alpha = min(lambda_min(Sigma^-1), lambda_min(Sigma)^2/2).

    Design: random SPD precisions of condition 1, 1e2, 1e4 in d up to 3 (5 in default, 8 in
    --thorough), svec and vech coordinates; controls: the information identity E[s s^T] =
    -E[H] and E[s] = 0 by exact Gauss-Hermite quadrature (`_hermite_rule`).

    Parameters
    ----------
    ctx : stability.checks.Context
        Mode (sizes) and seed.

    Returns
    -------
    dict
        The CheckResult fields, from `stability.checks.verdict.result`.
    """
    rng = ctx.rng("prop2-nd")
    dims = ctx.size((1, 2, 3), (1, 2, 3, 5), (1, 2, 3, 5, 8))
    rows, claims, controls = [], [], []
    for d in dims:
        x, w = _hermite_rule(d)
        for cond in (1.0, 1e2, 1e4):
            prec = random_spd(d, cond, rng) * float(np.exp(rng.uniform(-1, 1)))
            mu = rng.standard_normal(d)
            xs = mu + x @ np.linalg.cholesky(inv_spd(prec)).T
            alpha = G.assumption2_alpha(prec)
            for coords in ("svec", "vech"):
                closed = G.expected_hessian(mu, prec, mu, coords)
                # Information identity, by an independent exact quadrature: E[s s^T] = -E[H]
                # (and E[s] = 0). It holds on the parameter space (svec, vech), not on the d^2
                # free entries, where p_theta is not a density off the symmetric matrices.
                s_ = G.score(xs, mu, prec, coords)
                fisher = np.einsum("n,ni,nj->ij", w, s_, s_)
                scale = max(1.0, np.abs(closed).max())
                info = float(np.abs(fisher + closed).max() / scale)
                mean_score = float(np.abs(w @ s_).max() / scale)
                top = float(np.linalg.eigvalsh(closed)[-1])
                case = dict(d=d, cond=cond, coords=coords)
                claims.append(Measured(top, -1e-300, case=dict(case, what="negative definite")))
                controls.append(Measured(info, 1e-9, case=dict(case, what="E[s s^T] = -E[H]")))
                controls.append(Measured(mean_score, 1e-9, case=dict(case, what="E[s] = 0")))
                if coords == "svec":
                    claims.append(
                        Measured(
                            abs(top + alpha),
                            1e-9 * max(1.0, alpha),
                            case=dict(case, what="top eigenvalue = -alpha"),
                        )
                    )
                rows.append(
                    dict(
                        case, top_eigenvalue=top, minus_alpha=-alpha, information_identity_err=info
                    )
                )
            full_top = float(np.linalg.eigvalsh(G.expected_hessian(mu, prec, mu, "full"))[-1])
            rows.append(dict(d=d, cond=cond, coords="full", top_eigenvalue=full_top))
    full_pos = [r for r in rows if r["coords"] == "full" and r["top_eigenvalue"] > 0]
    svec_rows = [r for r in rows if r["coords"] == "svec"]
    head = max(svec_rows, key=lambda r: r["top_eigenvalue"])
    return result(
        claims,
        controls=controls,
        measured=head["top_eigenvalue"],
        expected=head["minus_alpha"],
        summary=f"negative definite in svec and vech coordinates for all {len(svec_rows)} random "
        f"SPD cases (condition up to 1e4), top eigenvalue = -alpha to 1e-9; the closed form equals "
        f"minus the Fisher information by exact Gauss-Hermite quadrature. In the d^2 free entries "
        f"of Sigma^-1 (full) it has positive eigenvalues +sigma_i sigma_j/2 on antisymmetric "
        f"directions ({len(full_pos)} cases), which are not directions of the parameter space",
        details=dict(rows=rows),
    )


def _hermite_rule(d: int, k: int = 3):
    """Tensor Gauss-Hermite rule for N(0, I_d): nodes (k^d, d), weights (k^d,).

    k = 3 nodes per axis integrate polynomials of degree <= 5 exactly: s s^T is of degree 4.
    """
    z, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / w.sum()
    grids = np.meshgrid(*([np.arange(k)] * d), indexing="ij")
    idx = np.stack([g.ravel() for g in grids], axis=1)
    return z[idx], np.prod(w[idx], axis=1)


@register(
    "prop2-lipschitz",
    "x -> Hessian_theta log p_theta(x) is 1-Lipschitz (Euclidean norm on x, spectral norm on "
    "matrices)",
    "Proposition 2; Assumption 1",
    GROUP,
)
def check_lipschitz(ctx):
    """Proposition 2 / Assumption 1: x -> Hessian log p_theta(x) is 1-Lipschitz.

    Design: the largest ||H(x + u) - H(x)||_2 over unit u by Nelder-Mead from 3 random starts
    in --quick, 4 in default, 20 in --thorough, for d up to 3 (4, 6), must be <= 1 in full and
    svec coordinates; control: it equals the analytic constant (1, or sqrt(2 - 1/d) in vech)
    to 1e-6, so a search that misses the maximum is seen.

    Parameters
    ----------
    ctx : stability.checks.Context
        Mode (sizes) and seed.

    Returns
    -------
    dict
        The CheckResult fields, from `stability.checks.verdict.result`.
    """
    rng = ctx.rng("prop2-lipschitz")
    dims = ctx.size((1, 2, 3), (1, 2, 3, 4), (1, 2, 3, 4, 6))
    rows = []
    for d in dims:
        for coords in G.COORDS:
            analytic = G.lipschitz_constant(d, coords)
            measured = G.lipschitz_measured(d, coords, rng, starts=ctx.size(3, 4, 20))
            rows.append(dict(d=d, coords=coords, analytic=analytic, measured=measured))
    vech = [r for r in rows if r["coords"] == "vech" and r["d"] >= 2]
    claims = [
        Measured(r["measured"], 1.0 + 1e-6, case=dict(d=r["d"], coords=r["coords"]))
        for r in rows
        if r["coords"] in ("full", "svec")
    ]
    controls = [
        Measured(abs(r["analytic"] - r["measured"]), 1e-6, case=dict(d=r["d"], coords=r["coords"]))
        for r in rows
    ]
    return result(
        claims,
        controls=controls,
        measured=max(r["measured"] for r in rows if r["coords"] == "svec"),
        expected=1.0,
        summary="L = 1 in full and svec (Frobenius-isometric) coordinates, analytic = measured; "
        "in vech coordinates (distinct entries) L = sqrt(2 - 1/d)"
        + (f", e.g. {vech[0]['measured']:.4f} at d=2" if vech else ""),
        details=dict(rows=rows, norm="spectral norm of the Hessian difference per unit |x - y|_2"),
    )
