"""Families whose derivatives sympy derives once from the log density (``derivatives="sympy"``).

`SympyFamily1D` is the base: a subclass writes its log density as a sympy expression
(``logpdf_expr``) and gets ``logpdf``, ``score``, ``hessian`` and ``hessian_dx`` (d/dx of the
Hessian, for Assumption 1's L) compiled by ``sympy.lambdify``. `ExpressionFamily` is the
researcher's formula from the command line (``--family 'sympy:...'``): any normalised 1D log
density in x with named parameters, its expectations on an adaptive composite rule.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from stability.errors import UsageError
from stability.families.base import Family, data_points
from stability.families.density1d import DensityTable, discrete_table


def stack_lambdified(values, n: int, shape: tuple) -> np.ndarray:
    """Broadcast the nested lists returned by lambdify to an array of shape (n, *shape)."""
    arr = np.empty((n, *shape))
    flat = values if len(shape) == 1 else [v for row in values for v in row]
    arr.reshape(n, -1)[:] = np.stack([np.broadcast_to(v, (n,)) for v in flat], axis=1)
    return arr


class SympyFamily1D(Family):
    """A 1D family whose derivatives are derived once with sympy from its log density."""

    derivatives = "sympy"

    def logpdf_expr(self, x, params):
        """log p_theta(x) as a sympy expression of the symbols x and params (one per name)."""
        raise NotImplementedError

    def symbols(self):
        """The sympy symbols (x, params) the expression is written in."""
        import sympy as sp

        x = sp.Symbol("x", real=True)
        params = sp.symbols(" ".join(self.param_names), real=True, seq=True)
        return x, tuple(params)

    @cached_property
    def symbolic_functions(self) -> tuple:
        """Compiled (log p, gradient, Hessian, d/dx Hessian), each a function of (x, *theta)."""
        import sympy as sp

        x, params = self.symbols()
        logp = self.logpdf_expr(x, params)
        grad = [sp.diff(logp, p) for p in params]
        hess = [[sp.diff(g, p) for p in params] for g in grad]
        dhess = [[sp.diff(h, x) for h in row] for row in hess]
        args = [x, *params]
        return tuple(
            sp.lambdify(args, expr, modules=["numpy", "scipy"], cse=True)
            for expr in (logp, grad, hess, dhess)
        )

    def _evaluate(self, which: int, x, theta, shape: tuple) -> np.ndarray:
        xs = data_points(x)
        with np.errstate(all="ignore"):  # outside the domain the value is nan, never a warning
            values = self.symbolic_functions[which](xs, *np.asarray(theta, dtype=float))
        if not shape:
            return np.broadcast_to(values, xs.shape).astype(float)
        return stack_lambdified(values, xs.size, shape)

    def logpdf(self, x, theta):
        """log p_theta(x) from the lambdified ``logpdf_expr``, shape (N,)."""
        return self._evaluate(0, x, theta, ())

    def score(self, x, theta):
        """Gradient in theta of the sympy expression, lambdified, shape (N, p)."""
        return self._evaluate(1, x, theta, (self.n_params,))

    def hessian(self, x, theta):
        """Hessian in theta of the sympy expression, lambdified, shape (N, p, p)."""
        return self._evaluate(2, x, theta, (self.n_params, self.n_params))

    def hessian_dx(self, x, theta):
        """d/dx of the Hessian, shape (N, p, p): its norm bounds the Lipschitz constant L."""
        return self._evaluate(3, x, theta, (self.n_params, self.n_params))


class ExpressionFamily(SympyFamily1D):
    """A 1D family given by a normalised log density written as a formula in x.

    Parameters
    ----------
    formula : str
        log p_theta(x), e.g. ``"-log(2*b) - abs(x)/b"``; sympy syntax, functions of sympy.
    params : sequence of str, optional
        The parameters, in theta's order (default: the formula's symbols other than x, sorted).
    positive : sequence of str
        Parameters constrained to be > 0.
    start : sequence of float, optional
        Where the maximisation of E_data[log p_theta] starts (default 0, or 1 if positive).
    support : (float, float)
        Where x lives (default the whole line; ``discrete`` families: integers in it).
    discrete : bool
        The formula is a log probability mass on the integers of ``support``.
    """

    def __init__(
        self,
        formula: str,
        params=None,
        positive=(),
        start=None,
        support=(-math.inf, math.inf),
        discrete: bool = False,
    ):
        import sympy as sp

        self.formula = formula
        try:
            expr = sp.sympify(formula, locals={"x": sp.Symbol("x", real=True)})
        except (sp.SympifyError, SyntaxError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"sympy cannot parse the formula {formula!r}: {exc}") from None
        if not isinstance(expr, sp.Expr):
            raise UsageError(f"the formula {formula!r} is not an expression")
        names = sorted(str(s) for s in expr.free_symbols if str(s) != "x")
        if "x" not in {str(s) for s in expr.free_symbols}:
            raise UsageError(f"the formula {formula!r} does not depend on x")
        params = list(params) if params else names
        unknown = sorted(set(names) - set(params))
        if unknown or not params:
            raise UsageError(
                f"the formula {formula!r} has symbols {unknown or names} that are not "
                f"parameters {params}"
            )
        for p in positive:
            if p not in params:
                raise UsageError(f"positive={p!r} is not a parameter of {formula!r}")
        self.param_names = tuple(params)
        self.positive = tuple(positive)
        self.discrete = bool(discrete)
        self.support = (float(support[0]), float(support[1]))
        if start is None:
            start = [1.0 if p in self.positive else 0.0 for p in params]
        if len(start) != len(params):
            raise UsageError(f"start needs {len(params)} values, got {len(start)}")
        self.start = np.asarray(start, dtype=float)
        self.name = f"sympy({formula})"
        self._expr_text = formula
        try:
            self.symbolic_functions  # noqa: B018 - compile now: a bad formula fails here
        except Exception as exc:  # lambdify raises many types for unsupported functions
            raise UsageError(f"sympy cannot compile the formula {formula!r}: {exc}") from None

    def logpdf_expr(self, x, params):
        """The user's formula parsed by sympy, in x and the parameter symbols."""
        import sympy as sp

        local = {"x": x, **{str(p): p for p in params}}
        return sp.sympify(self._expr_text, locals=local)

    def valid(self, theta) -> bool:
        """True when theta is finite and every parameter declared positive is > 0."""
        theta = np.asarray(theta, dtype=float)
        if not np.all(np.isfinite(theta)):
            return False
        return all(theta[self.param_names.index(p)] > 0 for p in self.positive)

    def table(self, theta):
        """The density tabulated for expectations, CDF and sampling (see `DensityTable`)."""
        theta = np.asarray(theta, dtype=float)
        key = tuple(theta.tolist())
        cache = self.__dict__.setdefault("_tables", {})
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            fn = lambda z: self.logpdf(z, theta)  # noqa: E731
            if self.discrete:
                cache[key] = discrete_table(fn, self.support)
            else:
                cache[key] = DensityTable.build(fn, self.support)
            if abs(cache[key].mass - 1.0) > 1e-6:
                raise UsageError(
                    f"the density {self.formula!r} integrates to {cache[key].mass:.6g}, not 1, "
                    f"at theta = {theta.tolist()}: give a normalised log density"
                )
        return cache[key]

    def nodes(self, theta):
        """Quadrature rule of the tabulated normalised density at theta: (N, 1), (N,)."""
        return self.table(theta).nodes()

    def sample(self, rng, n, theta):
        """n draws from the tabulated density at theta, shape (n, 1)."""
        return self.table(theta).sample(rng, n)

    def cdf(self, x, theta):
        """CDF of the tabulated density at theta."""
        return self.table(theta).cdf(x)

    def check_data(self, x, w) -> None:
        """Also refuses data outside the support, and non-integers for a discrete family."""
        super().check_data(x, w)
        lo, hi = self.support
        if np.any((x < lo) | (x > hi)):
            raise UsageError(f"data outside the support [{lo:g}, {hi:g}] of {self.name}")
        if self.discrete and np.any(x != np.round(x)):
            raise UsageError(f"{self.name} is discrete: the data must be integers")

    def initial_guess(self, data) -> np.ndarray:
        """The starting theta given by the user, shape (p,)."""
        return self.start.copy()

    def describe(self) -> str:
        """The formula and its parameters, marked [sympy]."""
        return f"log p = {self.formula}, theta = ({', '.join(self.param_names)}) [sympy]"
