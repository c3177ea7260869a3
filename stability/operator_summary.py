"""Theorem 1's numbers for one (family, data) pair, with Monte-Carlo errors when p_data is a sample.

At theta* (eq 7) the Jacobian of G_lambda^inf is J = (I + lam M)^-1 lam M with M = A^-1 B~
(eq 78 with B~ = E_theta*[Hessian], the Hessian in theta' of H_2; Lemma E.1 prints the mixed
derivative, which gives the wrong sign). Its eigenvalues are lam mu / (1 + lam mu) for the
eigenvalues mu of M, so the spectral radius is below 1 for every lambda > 0 unless some mu has
a negative real part; the critical lambda is then min over those mu of -1 / (2 Re mu).
Theorem 1 bounds ||J||_2 by lam (alpha + eps L) / (alpha - lam (alpha + eps L)) when
lam (1 + L eps / alpha) < 1/2 (eq 11).

When p_data is a sample (`stability.datasources.SampleData`), expectations under it are sample
averages; `summarize(..., bootstrap=R)` recomputes every number on R bootstrap replicates (the
same points with multinomial weights) and reports their standard deviations as standard
errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stability.errors import UsageError, check_lam
from stability.operator import Operator


@dataclass
class LambdaRow:
    """The Jacobian of G_lambda at theta* for one lambda (from eq 78 with B~)."""

    lam: float
    eigenvalues: np.ndarray  # (p,), lam mu / (1 + lam mu)
    spectral_radius: float
    norm_J: float  # ||J||_2, the norm Theorem 1 bounds
    theorem1_condition: bool | None  # lam (1 + L eps / alpha) < 1/2; None without eps
    theorem1_bound: float | None  # eq (11); inf when the condition fails


@dataclass
class OperatorSummary:
    """Everything `stability jacobian` prints for one operator (see the module docstring)."""

    name: str
    family: str
    data: str
    derivatives: str
    derivative_error: float  # largest error estimate of score/Hessian at theta* on p_data
    param_names: list
    theta_star: np.ndarray
    A: np.ndarray
    B_tilde: np.ndarray
    mu: np.ndarray
    alpha: float
    L: float
    eps: float | None
    lambda_theorem1: float | None
    lambda_critical: float  # inf: the spectral radius stays < 1 for every finite lambda
    rows: list = field(default_factory=list)
    se: dict | None = None
    bootstrap: int = 0
    bootstrap_failures: int = 0

    @property
    def stable_for_every_lambda(self) -> bool:
        """True when the spectral radius of J G_lambda(theta*) stays < 1 for every finite lambda."""
        return math.isinf(self.lambda_critical)


def jacobian_at_theta_star(op: Operator, lam: float) -> np.ndarray:
    """J G_lambda(theta*) = (I + lam A^-1 B~)^-1 lam A^-1 B~ (eq 78 with B~), shape (p, p)."""
    return op.jacobian_formula(lam, "hessian")


def lambda_row(op: Operator, lam: float) -> LambdaRow:
    """The `LambdaRow` of `op` at `lam` (finite, >= 0)."""
    lam = check_lam(lam, allow_inf=False)
    eig = op.jacobian_eigenvalues(lam)
    j = jacobian_at_theta_star(op, lam)
    eps = op.eps_or_none()
    cond = bound = None
    if eps is not None:
        cond = bool(lam * (1 + op.lipschitz() * eps / op.alpha()) < 0.5)
        bound = op.theorem1_bound(lam)
    return LambdaRow(
        lam=lam,
        eigenvalues=eig,
        spectral_radius=float(np.max(np.abs(eig))),
        norm_J=float(np.linalg.norm(j, 2)),
        theorem1_condition=cond,
        theorem1_bound=bound,
    )


def derivative_error(op: Operator) -> float:
    """Largest error estimate of the family's score and Hessian at theta* over p_data's nodes."""
    fam = op.family
    if not hasattr(fam, "derivative_errors"):
        return 0.0
    x, _ = op.data.nodes()
    es, eh = fam.derivative_errors(x, op.theta_star())
    return float(max(np.max(es, initial=0.0), np.max(eh, initial=0.0)))


def summarize(
    op: Operator, lams, bootstrap: int = 0, rng: np.random.Generator | None = None
) -> OperatorSummary:
    """Theorem 1's quantities at theta* for each lambda, with bootstrap errors for samples.

    Parameters
    ----------
    op : Operator
    lams : sequence of float
        Finite lambdas >= 0.
    bootstrap : int
        Number of bootstrap replicates (only for data with ``reweighted``; 0: none).
    rng : numpy Generator
        Randomness of the bootstrap weights.
    """
    lams = [check_lam(v, allow_inf=False) for v in lams]
    eps = op.eps_or_none()
    summary = OperatorSummary(
        name=op.name,
        family=op.family.describe() if hasattr(op.family, "describe") else op.family.name,
        data=op.data.describe() if hasattr(op.data, "describe") else op.data_name,
        derivatives=str(getattr(op.family, "derivatives", "given")),
        derivative_error=derivative_error(op),
        param_names=list(getattr(op.family, "param_names", [])),
        theta_star=op.theta_star(),
        A=op.A(),
        B_tilde=op.B_tilde(),
        mu=op.mu(),
        alpha=op.alpha(),
        L=op.lipschitz(),
        eps=eps,
        lambda_theorem1=None if eps is None else op.theorem1_lambda_max(),
        lambda_critical=op.spectral_lambda_max(),
        rows=[lambda_row(op, lam) for lam in lams],
    )
    if bootstrap and hasattr(op.data, "reweighted"):
        if rng is None:
            raise UsageError("the bootstrap needs a random generator")
        summary.se, summary.bootstrap_failures = _bootstrap_se(op, lams, int(bootstrap), rng)
        summary.bootstrap = int(bootstrap)
    return summary


def _numbers(op: Operator, lams) -> dict:
    """The numbers whose Monte-Carlo error the bootstrap measures, as arrays."""
    rows = [lambda_row(op, lam) for lam in lams]
    eps = op.eps_or_none()
    out = dict(
        theta_star=op.theta_star(),
        mu=np.real(op.mu()),
        alpha=op.alpha(),
        L=op.lipschitz(),
        spectral_radius=np.array([r.spectral_radius for r in rows]),
        norm_J=np.array([r.norm_J for r in rows]),
    )
    if eps is not None:
        out.update(
            eps=eps,
            lambda_theorem1=op.theorem1_lambda_max(),
            theorem1_bound=np.array([r.theorem1_bound for r in rows]),
        )
    return out


def _bootstrap_se(op: Operator, lams, replicates: int, rng) -> tuple[dict, int]:
    data = op.data
    n = int(data.size)
    base = np.asarray(data.weights, dtype=float)
    draws, failures = [], 0
    for _ in range(replicates):
        counts = rng.multinomial(n, base / base.sum())
        rep = Operator(op.family, data.reweighted(counts.astype(float)), op.name)
        try:
            draws.append(_numbers(rep, lams))
        except (UsageError, np.linalg.LinAlgError):
            failures += 1  # a replicate without a maximiser (e.g. a class never drawn)
    if len(draws) < 2:
        raise UsageError(f"the bootstrap failed on {failures} of {replicates} replicates")
    se = {}
    for key in draws[0]:
        stack = np.stack([np.asarray(d[key], dtype=float) for d in draws])
        with np.errstate(invalid="ignore"):
            se[key] = np.std(stack, axis=0, ddof=1)
    return se, failures
