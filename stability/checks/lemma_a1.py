"""Checks of Lemma A.1 (iii): the collapse rate alpha(n) = E[chi_{n-1}]/sqrt(n-1), eq (19).

Three independent computations of alpha(n) must agree (sympy from the chi density, scipy,
mpmath at 60 digits); its asymptotic expansion must have the error of its next term; and
alpha(n) < 1, increasing, with 1 - alpha(n) ~ 1/(4n).
"""

from __future__ import annotations

import numpy as np

from stability import rates as A
from stability.checks import register
from stability.checks.verdict import Measured, result

GROUP = "lemma-a1"


@register(
    "alpha-symbolic",
    "alpha(n) = E[chi_{n-1}]/sqrt(n-1) = sqrt(2/(n-1)) Gamma(n/2)/Gamma((n-1)/2): sympy "
    "(integrating the chi density), scipy (numeric, any n) and mpmath agree to 1e-12",
    "Lemma A.1 (iii), eq (19)",
    GROUP,
)
def check_alpha_symbolic(ctx):
    """alpha(n) of eq (19) three ways, for n = 2 to 1e9: sympy, scipy and mpmath agree.

    sympy integrates r times the chi_{n-1} density (`rates.alpha_sympy`), evaluated in mpmath;
    scipy's `rates.alpha` (Gamma ratio, Stirling series for large n) and its 1 - alpha(n) are
    compared with mpmath at 60 digits. Holds when every relative error is below 1e-12 (1e-10
    for 1 - alpha(n), which is about 1/(4n)).


    Parameters
    ----------
    ctx : stability.checks.Context
        Unused: the check is exact (deterministic).

    Returns
    -------
    dict
        The fields of a `CheckResult` (`stability.checks.verdict.result`).
    """
    import mpmath
    import sympy as sp

    expr, nsym = A.alpha_sympy()
    # The symbolic expression is evaluated with mpmath (subs/evalf would expand Gamma(5e8)).
    sym_fn = sp.lambdify(nsym, expr, "mpmath")
    rows, claims = [], []
    for n in (2, 3, 4, 5, 7, 10, 30, 100, 1000, 10**4, 10**6, 10**9):
        exact = A.alpha_mpmath(n, dps=60)
        with mpmath.workdps(40):
            sym_val = sym_fn(mpmath.mpf(n))
        err_num = abs(float((A.alpha(n) - exact) / exact))
        err_sym = abs(float((sym_val - exact) / exact))
        # 1 - alpha is what matters at large n: compare it relatively too.
        err_gap = abs(float((A.one_minus_alpha(n) - (1 - exact)) / (1 - exact)))
        rows.append(
            dict(
                n=n,
                alpha=float(A.alpha(n)),
                rel_err_scipy=err_num,
                rel_err_sympy=err_sym,
                rel_err_gap=err_gap,
            )
        )
        claims += [
            Measured(err_num, 1e-12, case=dict(n=n, what="scipy vs mpmath")),
            Measured(err_sym, 1e-12, case=dict(n=n, what="sympy vs mpmath")),
            Measured(err_gap, 1e-10, case=dict(n=n, what="1 - alpha vs mpmath")),
        ]
    worst = max(max(r["rel_err_scipy"], r["rel_err_sympy"]) for r in rows)
    gap_worst = max(r["rel_err_gap"] for r in rows)
    return result(
        claims,
        summary=f"sympy expression {expr}; max relative error {worst:.2e} (tolerance 1e-12), "
        f"of 1 - alpha {gap_worst:.2e} (tolerance 1e-10)",
        details=dict(sympy=str(expr), rows=rows, tolerance=1e-12),
        measured=worst,
        expected=0.0,
    )


@register(
    "alpha-asymptotic",
    "alpha(n) -> 1 with alpha(n) = 1 - 1/(4(n-1)) + 1/(32(n-1)^2) + 5/(128(n-1)^3) - ...: the "
    "order-k expansion (sympy, Stirling series) has error ~ c_{k+1}/(n-1)^(k+1)",
    "Lemma A.1 (iii), text after eq (31)",
    GROUP,
)
def check_alpha_asymptotic(ctx):
    """The expansion of alpha(n) in 1/(n-1) to order 4 has the error of its next term.

    Both expansions come from sympy (`rates.alpha_asymptotic`, Stirling's series); at
    n = 100, 1000, 1e4 the error against mpmath times (n-1)^5 must approach the order-5
    coefficient: within 1% at n = 1000, and closer at n = 1e4 than at n = 100.


    Parameters
    ----------
    ctx : stability.checks.Context
        Unused: the check is exact (deterministic).

    Returns
    -------
    dict
        The fields of a `CheckResult` (`stability.checks.verdict.result`).
    """
    import mpmath

    order = 4
    exp4 = A.alpha_asymptotic(order)
    exp5 = A.alpha_asymptotic(order + 1)
    c_next = float(exp5.coefficients[order])
    rows = []
    for n in (100, 1000, 10000):
        with mpmath.workdps(60):
            exact = A.alpha_mpmath(n, dps=60)
            m = mpmath.mpf(n - 1)
            trunc = 1 + sum(
                mpmath.mpf(str(c)) / m ** (j + 1) for j, c in enumerate(exp4.coefficients)
            )
            scaled = float((exact - trunc) * m ** (order + 1))
        rows.append(dict(n=n, error_times_m5=scaled, next_coefficient=c_next))
    # (n-1)^5 x error = c_5 + c_6/(n-1) + ...: 1% at n = 1000, and closer at n = 1e4 than at 100.
    claims = [
        Measured(abs(rows[1]["error_times_m5"] - c_next) / abs(c_next), 0.01, case=dict(n=1000)),
        Measured(
            abs(rows[2]["error_times_m5"] - c_next),
            abs(rows[0]["error_times_m5"] - c_next),
            case=dict(what="error at n=1e4 below error at n=100"),
        ),
    ]
    return result(
        claims,
        summary=f"{exp4}; (n-1)^5 x error at n=1000 is {rows[1]['error_times_m5']:.6f}, "
        f"next coefficient {c_next:.6f}",
        details=dict(
            expansion=str(exp4), coefficients=[str(c) for c in exp5.coefficients], rows=rows
        ),
        measured=rows[1]["error_times_m5"],
        expected=c_next,
    )


@register(
    "alpha-bounds",
    "alpha(n) < 1 for every n >= 2, increasing in n, and 1 - alpha(n) -> 0 (~ 1/(4n))",
    "Lemma A.1 (iii), eqs (29)-(31)",
    GROUP,
)
def check_alpha_bounds(ctx):
    """alpha(n) < 1, strictly increasing, and 4(n-1)(1 - alpha(n)) -> 1 (eqs 29-31).

    Evaluated on every n in [2, 2000) and 400 log-spaced n up to 1e9 with `rates.one_minus_alpha`
    (no cancellation): 1 - alpha(n) > 0, its steps < 0, and 4(n-1)(1 - alpha(n)) within 1e-6 of
    1 at n = 1e9.


    Parameters
    ----------
    ctx : stability.checks.Context
        Unused: the check is exact (deterministic).

    Returns
    -------
    dict
        The fields of a `CheckResult` (`stability.checks.verdict.result`).
    """
    ns = np.unique(np.concatenate([np.arange(2, 2000), np.round(np.logspace(3.3, 9, 400))]))
    gap = A.one_minus_alpha(ns)
    steps = np.diff(gap)
    ratio = float(gap[-1] * 4 * (ns[-1] - 1))
    i_gap, i_step = int(np.argmin(gap)), int(np.argmax(steps))
    tiny = float(np.finfo(float).tiny)  # strict inequalities: 1 - alpha > 0, steps < 0
    claims = [
        Measured(
            float(gap[i_gap]), tiny, ">=", case=dict(n=float(ns[i_gap]), what="1 - alpha(n) > 0")
        ),
        Measured(
            float(steps[i_step]),
            -tiny,
            case=dict(n=float(ns[i_step + 1]), what="1 - alpha(n) strictly decreasing"),
        ),
        Measured(abs(ratio - 1), 1e-6, case=dict(n=float(ns[-1]), what="4(n-1)(1 - alpha) -> 1")),
    ]
    return result(
        claims,
        summary=f"min 1 - alpha = {gap.min():.3e} > 0 over n in [2, 1e9]; strictly increasing: "
        f"{bool(steps.max() < 0)}; 4(n-1)(1 - alpha(n)) at n=1e9: {ratio:.9f}",
        details=dict(n_max=float(ns[-1]), alpha_2=float(A.alpha(2)), four_n_gap=ratio),
        measured=float(gap.min()),
        expected=0.0,
    )
