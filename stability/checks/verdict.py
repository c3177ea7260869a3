"""From what a check measured to its verdict: the one rule every check uses.

A check measures one or more quantities, each against the bound its claim puts on it
(`Measured`): an exact computation (closed form, quadrature, algebra, finite differences) is
decided by the side of the bound it falls on; a Monte-Carlo estimate with standard error `se` is
decided only when it lies at least `MARGIN_SE` standard errors from the bound ("holds" on the
claim's side, "fails" on the other), and is "inconclusive" in between. With 5 standard errors a
wrong decision has probability below 3e-7 per comparison (normal tail), so a check that makes a
few hundred comparisons needs no further multiplicity correction.

`result` combines a check's measurements: "fails" if any claim measurement fails (the strongest
one is the counterexample), "holds" if every one holds, else "inconclusive"; and "inconclusive"
whenever a *control* does not hold. A control is a measurement whose answer is known
independently of the claim (the corrected formula must match finite differences, the independent
simulator must match a closed form): when it fails, the check's instrument is broken and its
verdict cannot be trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MARGIN_SE = 5.0


@dataclass(frozen=True)
class Measured:
    """One measured quantity against the bound of the claim.

    Parameters
    ----------
    value : float
        What was measured.
    bound : float
        The claim's bound on it.
    sense : {"<=", ">="}
        The claim is `value <= bound` or `value >= bound`.
    se : float, optional
        Standard error of `value` for a Monte-Carlo estimate; None for an exact computation.
    case : dict
        Which case this is (parameters; it becomes the counterexample when it decides "fails").
    shown : tuple of float, optional
        (estimate, target) to report as `measured` and `expected` instead of (value, bound),
        e.g. an estimate and the value it should equal when `value` is their distance.
    """

    value: float
    bound: float
    sense: str = "<="
    se: float | None = None
    case: dict = field(default_factory=dict)
    shown: tuple | None = None

    @property
    def slack(self) -> float:
        """bound - value for "<=" (value - bound for ">="): positive on the claim's side."""
        if self.sense not in ("<=", ">="):
            raise ValueError(f"sense must be '<=' or '>=', got {self.sense!r}")
        return self.bound - self.value if self.sense == "<=" else self.value - self.bound

    @property
    def margin_se(self) -> float | None:
        """Signed distance from the bound in standard errors (None for exact computations)."""
        if self.se is None:
            return None
        if self.se > 0:
            return self.slack / self.se
        return math.copysign(math.inf, self.slack) if self.slack else 0.0

    @property
    def verdict(self) -> str:
        """'holds', 'fails' or 'inconclusive' for this one comparison."""
        if math.isnan(self.value) or math.isnan(self.bound):
            return "inconclusive"
        if self.se is None:
            return "holds" if self.slack >= 0 else "fails"
        m = self.margin_se
        if math.isnan(m):
            return "inconclusive"
        return "holds" if m >= MARGIN_SE else "fails" if m <= -MARGIN_SE else "inconclusive"


def equal(estimate: float, target: float, tol: float, se: float | None = None, **case) -> Measured:
    """The claim `estimate = target` to within `tol`, as |estimate - target| <= tol.

    With a standard error this is an equivalence test: "holds" needs |estimate - target| to be
    at least 5 standard errors inside `tol`, "fails" at least 5 outside.
    """
    return Measured(
        abs(float(estimate) - float(target)),
        float(tol),
        "<=",
        None if se is None else float(se),
        case,
        (float(estimate), float(target)),
    )


def coverage(inside, level: float, **case) -> Measured:
    """The claim P(event) >= `level` from i.i.d. indicators of the event.

    The standard error is that of a fraction at the boundary, sqrt(level (1 - level) / runs)
    (a score test), so a "holds" needs the observed fraction `MARGIN_SE` such errors above
    `level`: with every run inside, runs >= MARGIN_SE^2 level / (1 - level) (475 at 0.95).

    Parameters
    ----------
    inside : array_like of bool, shape (runs,)
        Whether the event happened in each run.
    level : float
        The claimed lower bound on its probability, in (0, 1).
    **case
        Which case this is; ``runs`` is added.

    Returns
    -------
    Measured
        The observed fraction against `level`, sense ">=".
    """
    inside = np.asarray(inside, dtype=bool)
    se = math.sqrt(level * (1 - level) / inside.size)
    return Measured(float(inside.mean()), level, ">=", se, dict(case, runs=int(inside.size)))


def _strength(m: Measured) -> float:
    """How clearly a measurement is on its side (margin in se, or slack for exact ones)."""
    s = m.margin_se if m.se is not None else m.slack
    return abs(s) if s is not None and not math.isnan(s) else 0.0


def decide(claims: list[Measured], controls: list[Measured] = ()) -> tuple[str, Measured]:
    """The verdict of a set of measurements and the one that decides it.

    Parameters
    ----------
    claims : list of Measured
        The claim's measurements (at least one).
    controls : list of Measured
        Measurements that must hold for the instrument to be trusted.
    """
    if not claims:
        raise ValueError("a check needs at least one measurement")
    bad_controls = [c for c in controls if c.verdict != "holds"]
    if bad_controls:
        return "inconclusive", bad_controls[0]
    failing = [m for m in claims if m.verdict == "fails"]
    if failing:
        return "fails", max(failing, key=_strength)
    open_ = [m for m in claims if m.verdict == "inconclusive"]
    if open_:
        return "inconclusive", min(open_, key=_strength)
    # A Monte-Carlo check holds as narrowly as its closest estimate.
    monte_carlo = [m for m in claims if m.se is not None]
    return "holds", min(monte_carlo or claims, key=_strength)


def result(
    claims: list[Measured],
    *,
    summary: str,
    details: dict | None = None,
    controls: list[Measured] = (),
    counterexample: dict | None = None,
    measured: float | None = None,
    expected: float | None = None,
) -> dict:
    """The fields of a CheckResult from a check's measurements (see the module docstring).

    `measured`, `expected` and `interval` come from the deciding measurement unless given;
    `margin_se` is its distance from the bound in standard errors when the check is
    Monte-Carlo (any measurement with a standard error), else None. A "fails" verdict carries
    the deciding case as counterexample unless one is given.
    """
    verdict, head = decide(list(claims), list(controls))
    est, target = head.shown if head.shown is not None else (head.value, head.bound)
    monte_carlo = any(m.se is not None for m in [*claims, *controls])
    interval = None
    if head.se is not None:
        interval = [est - MARGIN_SE * head.se, est + MARGIN_SE * head.se]
    margin = None
    if monte_carlo:
        # A failed control makes the check inconclusive; its margin is still the claims'.
        _, m_head = decide(list(claims)) if head in controls else (verdict, head)
        margin = abs(m_head.margin_se) if m_head.se is not None else math.inf
    if verdict == "inconclusive" and controls and head in controls:
        summary = f"control failed ({head.case}): the instrument cannot be trusted; " + summary
    if verdict == "fails" and counterexample is None:
        counterexample = dict(head.case, measured=est, bound=target)
    out_details = dict(details or {})
    out_details["decision"] = dict(
        rule=f"Monte-Carlo estimates decided at >= {MARGIN_SE:g} standard errors from the bound, "
        "exact computations by the side of the bound",
        claims=len(claims),
        controls=len(controls),
        deciding_case=head.case,
        deciding_value=head.value,
        deciding_bound=head.bound,
        deciding_sense=head.sense,
    )
    return dict(
        verdict=verdict,
        measured=float(est if measured is None else measured),
        expected=float(target if expected is None else expected),
        interval=interval,
        margin_se=margin,
        summary=summary,
        details=out_details,
        counterexample=counterexample if verdict == "fails" else None,
    )


def largest_error(
    claims: list[Measured], rows: list[dict], key: str, summary: str, **fields
) -> dict:
    """The fields of a CheckResult for a check whose rows each report an error that should be 0.

    Parameters
    ----------
    claims : list of Measured
        The check's measurements (decided by `result`).
    rows : list of dict
        One per case; ``row[key]`` is its error (a distance or a relative difference).
    key : str
        The error's key in the rows.
    summary : str
        A template: ``{worst}`` is replaced by the largest error (format specs allowed).
    **fields
        Further keyword arguments of `result` (controls, counterexample).

    Returns
    -------
    dict
        `result`'s fields with the rows as details, the largest error as `measured`, 0 as
        `expected`.
    """
    worst = max(r[key] for r in rows)
    return result(
        claims,
        summary=summary.format(worst=worst),
        details=dict(rows=rows),
        measured=worst,
        expected=0.0,
        **fields,
    )
