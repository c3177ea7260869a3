"""Numerical derivatives in theta (and in x) with an error estimate.

Two methods, for families that give only their log density:

- complex step (Squire and Trapp 1998): d f/d theta_j = Im f(theta + i h e_j) / h, exact to
  rounding for any h when f is analytic and written with complex-safe numpy operations;
- central differences with two Richardson extrapolations (error O(h^6)); the error estimate is
  the change made by the last extrapolation, an overestimate of the final error.

Steps are relative to each parameter's size and shrink until theta +- h stays valid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

REL_STEP = 1e-2  # first difference step, relative; Richardson uses h, h/2, h/4
COMPLEX_STEP = 1e-30
EPS = np.finfo(float).eps


def _steps(theta: np.ndarray, valid: Callable[[np.ndarray], bool]) -> np.ndarray:
    """Step per coordinate, shape (p,): REL_STEP * max(|theta_j|, 1), shrunk near the boundary.

    The step is halved until theta +- step is valid, then quartered once more when it had to
    shrink, so that the differences stay clear of where log p is singular (a scale -> 0).
    """
    h = REL_STEP * np.maximum(np.abs(theta), 1.0)
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = 1.0
        shrunk = False
        for _ in range(60):
            if valid(theta + h[j] * e) and valid(theta - h[j] * e):
                break
            h[j] *= 0.5
            shrunk = True
        if shrunk:
            h[j] *= 0.25
    return h


def richardson(
    central: Callable[[float], np.ndarray], h: float, rounding=0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Extrapolate a central difference D(h) = D + c2 h^2 + c4 h^4 + ... to h -> 0.

    Parameters
    ----------
    central : callable
        h -> D(h), an array of any shape.
    h : float
        The largest step.
    rounding : float or array
        Rounding error of D(h/4), added to the estimate.

    Returns
    -------
    value, error : arrays of D's shape; error = |R - R(h/2 level)| + 2 rounding (the
    extrapolation weights sum to about 2 in absolute value), an overestimate.
    """
    d1, d2, d4 = central(h), central(h / 2), central(h / 4)
    r1 = (4 * d2 - d1) / 3
    r2 = (4 * d4 - d2) / 3
    value = (16 * r2 - r1) / 15
    return value, np.abs(value - r2) + 2 * rounding


def gradient(
    f: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    valid: Callable[[np.ndarray], bool],
    complex_step: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of a vector-valued f(theta) (shape (N,)) in theta: values and errors (N, p).

    Parameters
    ----------
    f : callable
        theta (p,) -> array (N,); must accept complex theta when `complex_step` is True.
    theta : array, shape (p,)
    valid : callable
        theta -> bool, the parameter domain (steps shrink to stay inside).
    complex_step : bool
        Use the complex step; its error estimate is the difference with Richardson's result
        when that is larger than rounding, which also catches a non-analytic f.
    """
    theta = np.asarray(theta, dtype=float)
    h = _steps(theta, valid)
    cols, errs = [], []
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = 1.0

        def central(step, e=e):
            return (f(theta + step * e) - f(theta - step * e)) / (2 * step)

        scale = np.maximum.reduce([np.abs(f(theta + t * e)) for t in (-h[j], 0.0, h[j])])
        val, err = richardson(central, h[j], 10 * EPS * (1 + scale) / (h[j] / 4))
        if complex_step:
            cs = np.imag(f(theta + 1j * COMPLEX_STEP * e)) / COMPLEX_STEP
            # The complex step is exact for analytic f; if it disagrees with Richardson beyond
            # Richardson's own error, f is not complex-safe and Richardson's value is kept.
            if np.all(np.abs(cs - val) <= 10 * err + 1e-10 * (1 + np.abs(val))):
                val, err = cs, np.abs(cs - val)
        cols.append(val)
        errs.append(err)
    return np.stack(cols, axis=-1), np.stack(errs, axis=-1)


def jacobian_of(
    g: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    valid: Callable[[np.ndarray], bool],
    inner=0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Derivative of a matrix-valued g(theta) (shape (N, p)) in theta: (N, p, p) and errors.

    Used for the Hessian as the derivative of the score; symmetrised, the error estimate
    includes the asymmetry. `inner` is the error of g itself (shape (N, p) or scalar), which the
    differences amplify by 1/step.
    """
    theta = np.asarray(theta, dtype=float)
    h = _steps(theta, valid)
    base = g(theta)
    cols, errs = [], []
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = 1.0

        def central(step, e=e):
            return (g(theta + step * e) - g(theta - step * e)) / (2 * step)

        scale = np.maximum.reduce(
            [np.abs(base), np.abs(g(theta + h[j] * e)), np.abs(g(theta - h[j] * e))]
        )
        val, err = richardson(central, h[j], (10 * EPS * (1 + scale) + inner) / (h[j] / 4))
        cols.append(val)
        errs.append(err)
    hess = np.stack(cols, axis=-1)
    err = np.stack(errs, axis=-1)
    sym = 0.5 * (hess + np.swapaxes(hess, -1, -2))
    return sym, 0.5 * (err + np.swapaxes(err, -1, -2)) + np.abs(hess - sym)


def hessian_from_values(
    f: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    valid: Callable[[np.ndarray], bool],
) -> tuple[np.ndarray, np.ndarray]:
    """Second derivatives of a vector-valued f(theta) (shape (N,)) from its values: (N, p, p).

    Central second differences (diagonal) and four-point cross differences (off-diagonal),
    each extrapolated twice (Richardson); no nested differences, so rounding grows like
    eps |f| / h^2 only.
    """
    theta = np.asarray(theta, dtype=float)
    h = _steps(theta, valid)
    p = theta.size
    f0 = f(theta)
    hess = np.empty((f0.size, p, p))
    err = np.empty((f0.size, p, p))
    for j in range(p):
        for k in range(j, p):
            ej = np.zeros(p)
            ej[j] = h[j]
            ek = np.zeros(p)
            ek[k] = h[k]

            def central(t, ej=ej, ek=ek, diag=j == k):
                if diag:
                    return (f(theta + t * ej) - 2 * f0 + f(theta - t * ej)) / (t * t * ej @ ej)
                plus, minus = ej + ek, ej - ek
                num = f(theta + t * plus) - f(theta + t * minus) - f(theta - t * minus)
                return (num + f(theta - t * plus)) / (4 * t * t * np.sqrt((ej @ ej) * (ek @ ek)))

            corners = [f(theta + a * ej + b * ek) for a in (-1, 1) for b in (-1, 1)]
            scale = np.maximum.reduce([np.abs(f0)] + [np.abs(c) for c in corners])
            rounding = 40 * EPS * (1 + scale) / (h[j] * h[k] / 16)
            hess[:, j, k], err[:, j, k] = richardson(central, 1.0, rounding)
            hess[:, k, j], err[:, k, j] = hess[:, j, k], err[:, j, k]
    return hess, err


def derivative_in_x(
    g: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """d/dx of g(x) for 1D points x (shape (N,)): values and errors, shape of g(x).

    Used for d/dx of the Hessian (Assumption 1's Lipschitz constant) when no closed form is
    given; the step is relative to max(1, |x|).
    """
    x = np.asarray(x, dtype=float).reshape(-1)
    scale = np.maximum(1.0, np.abs(x))

    def central(step):
        s = step * scale
        d = g(x + s) - g(x - s)
        return d / (2 * s).reshape((-1,) + (1,) * (d.ndim - 1))

    return richardson(central, h)
