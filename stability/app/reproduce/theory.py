"""The theory part of the report: every registered check, alpha(n), and Theorem 1's bound.

Two sections: "theory-checks" (every numbered claim, Propositions 1-4, Lemmas A.1, A.2, E.1,
Theorems 1-2, with the verdict of `stability check`) and "theorem1" (the spectral radius of
J G_lambda(theta*) against the bound of eq (11), per model family, over a grid of lambda).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stability.app.reproduce.section import EngineClock, Section, pyplot, save
from stability.app.reproduce.sizes import ReproduceSize, TheorySize

# The figure of 1 - alpha(n) spans n = 2 .. 1e6.
ALPHA_FIGURE_NS = np.unique(np.round(np.logspace(0.31, 6, 120)).astype(int))


def plan(size: TheorySize, seed: int) -> dict:
    """What the theory part asks of the core at `size`.

    Returns
    -------
    dict
        ``check_mode`` (str), ``seed`` (int) and ``jacobian_lambdas``: the lambdas, shape
        (size.jacobian_lambdas,), log-spaced on [0.02, 20], where J G_lambda is evaluated.
    """
    return dict(
        check_mode=size.check_mode,
        seed=seed,
        jacobian_lambdas=np.geomspace(0.02, 20, size.jacobian_lambdas),
    )


def part_theory(out: Path, size: ReproduceSize, seed: int, clock: EngineClock) -> list[Section]:
    """Run every check and Theorem 1's Jacobian comparison; the sections "theory-checks" and
    "theorem1", with their figures under ``out/figures``."""
    todo = plan(size.theory, seed)
    with clock.running():
        from stability.checks import run_checks

        results, _ = run_checks(None, mode=todo["check_mode"], seed=todo["seed"])
    fig_alpha = alpha_figure(out, results, clock)
    spectral, fig_jacobian = jacobian_figure(out, todo["jacobian_lambdas"], clock)
    theorem1 = next(r for r in results if r.name == "theorem1-bound")
    return [
        checks_section(results, fig_alpha),
        Section(
            "theorem1",
            "theory",
            "Theorem 1: stability near theta*",
            "If lambda (1 + L eps / alpha) < 1/2, ||J G_lambda(theta*)|| <= "
            "lambda (alpha + eps L) / (alpha - lambda (alpha + eps L)) < 1",
            "Theorem 1, eq (11)",
            theorem1.verdict,
            theorem1.summary,
            numbers=spectral,
            figures=[fig_jacobian],
        ),
    ]


def checks_section(results: list, figure: str) -> Section:
    """The "theory-checks" section: one table row per check result, the failures spelled out."""
    rows = [["check", "reference", "verdict", "measured", "expected"]]
    for r in results:
        rows.append([r.name, r.reference, r.verdict, f"{r.measured:.4g}", f"{r.expected:.4g}"])
    counts = {v: sum(r.verdict == v for r in results) for v in ("holds", "fails", "inconclusive")}
    failing = ", ".join(r.name for r in results if r.verdict == "fails") or "none"
    return Section(
        "theory-checks",
        "theory",
        "Every numbered claim, checked",
        "Propositions 1-4, Lemmas A.1, A.2, E.1, Theorems 1-2",
        "appendices A-F",
        "fails" if counts["fails"] else "holds",
        f"{len(results)} checks: {counts['holds']} hold, {counts['fails']} fail ({failing}), "
        f"{counts['inconclusive']} inconclusive. The findings, one per failing check: "
        + "; ".join(f"{r.name}: {r.summary}" for r in results if r.verdict != "holds"),
        numbers={
            r.name: {"verdict": r.verdict, "measured": r.measured, "expected": r.expected}
            for r in results
        },
        figures=[figure],
        table=rows,
    )


def alpha_figure(out: Path, results: list, clock: EngineClock) -> str:
    """Left: 1 - alpha(n) against n and its leading order 1/(4(n-1)) (Lemma A.1). Right: the
    smallest per-step rate that holds for d = 2, n = 5, against the condition number of Sigma_0,
    with alpha_2(5) of Lemma A.2 and the 1D alpha(5) (the prop1-multivariate check's rows)."""
    from stability import rates

    ns = ALPHA_FIGURE_NS[ALPHA_FIGURE_NS >= 2]
    with clock.running():
        one_minus = rates.one_minus_alpha(ns)
        alpha_2 = rates.alpha_d_quadrature(5, 2)
        alpha_1 = rates.alpha(5)
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].loglog(ns, one_minus, label="1 - alpha(n)")
    ax[0].loglog(ns, 1 / (4 * (ns - 1)), "k--", lw=1, label="1/(4(n-1))")
    ax[0].set_xlabel("n")
    ax[0].legend()
    ax[0].set_title("Collapse rate per refit (Lemma A.1)")
    rows = next(r for r in results if r.name == "prop1-multivariate").details["rows"]
    for t in sorted({row["t"] for row in rows}):
        sel = [row for row in rows if row["t"] == t and row["d"] == 2 and row["n"] == 5]
        if sel:
            ax[1].semilogx(
                [r["cond"] for r in sel],
                [r["smallest_constant"] for r in sel],
                "o-",
                label=f"t = {t}",
            )
    ax[1].axhline(alpha_2, color="r", ls="--", label="alpha_2(5) (Lemma A.2)")
    ax[1].axhline(alpha_1, color="k", ls=":", label="alpha(5) (1D)")
    ax[1].set_xlabel("condition number of Sigma_0")
    ax[1].set_title("Smallest per-step rate that holds (d=2, n=5)")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out / "figures" / "theory_alpha.png")


def jacobian_figure(out: Path, lams: np.ndarray, clock: EngineClock) -> tuple[dict, str]:
    """The spectral radius of J G_lambda(theta*) (finite differences) against Theorem 1's bound
    (eq 11), one panel per model family of `stability.operator.default_operators`.

    Parameters
    ----------
    lams : np.ndarray, shape (L,)
        The lambdas at which the Jacobian is evaluated.

    Returns
    -------
    (dict, str)
        Per family, lambda_theorem (the largest lambda Theorem 1's condition allows) and max_rho
        (the largest spectral radius on the grid); the figure's path.
    """
    with clock.running():
        from stability.operator import default_operators

        ops = default_operators()
        rho = {
            op.name: [float(np.max(np.abs(np.linalg.eigvals(op.jacobian_fd(lam))))) for lam in lams]
            for op in ops
        }
        bound = {op.name: [op.theorem1_bound(lam) for lam in lams] for op in ops}
        lam_max = {op.name: op.theorem1_lambda_max() for op in ops}
    plt = pyplot()
    fig, axes = plt.subplots(1, len(ops), figsize=(3.2 * len(ops), 3), sharey=True)
    for ax, op in zip(axes, ops):
        ax.semilogx(lams, rho[op.name], "o-", ms=3, label="spectral radius")
        ax.semilogx(lams, np.minimum(bound[op.name], 2), "r--", label="bound (11)")
        ax.axvline(lam_max[op.name], color="k", ls=":", lw=1)
        ax.axhline(1, color="gray", lw=0.5)
        ax.set_ylim(0, 1.5)
        ax.set_title(op.name, fontsize=9)
        ax.set_xlabel("lambda")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    spectral = {
        op.name: dict(lambda_theorem=lam_max[op.name], max_rho=max(rho[op.name])) for op in ops
    }
    return spectral, save(fig, out / "figures" / "theory_jacobian.png")
