"""Families from the researcher's code: ``file.py:Name``, ``package.module:Name``, entry points.

The object named may be a class (called with the specification's parameters), a factory
function (likewise) or a ready instance. It must have ``logpdf``, ``nodes``, ``sample``,
``initial_guess`` and ``param_names``; a subclass of `stability.families.Family` has all the
rest by default, and a duck-typed object without ``score``/``hessian`` gets numerical ones.
Loading goes through `stability.plugins` (the one loader of every plugin kind): another package
registers families under the entry-point group ``stability.families``.
"""

from __future__ import annotations

import numpy as np

from stability import plugins
from stability.errors import UsageError
from stability.families.base import Family

REQUIRED = ("logpdf", "nodes", "sample", "initial_guess", "param_names")


def load_from_file(path: str, name: str):
    """The object `name` defined in the Python file `path` (executed as a fresh module)."""
    return plugins.load("family", f"{path}:{name}")[0]


def load_from_module(module: str, name: str):
    """The object `name` of the importable module `module`."""
    return plugins.load("family", f"{module}:{name}")[0]


def entry_point_names() -> list[str]:
    """Families registered by installed packages (entry-point group ``stability.families``)."""
    return plugins.names("family")


def load_entry_point(name: str):
    """The object a registered family name points to."""
    return plugins.load("family", name)[0]


def instantiate(obj, params: dict, label: str):
    """A family from a class, factory or instance, checked for the required methods."""
    if isinstance(obj, type) or callable(obj) and not hasattr(obj, "logpdf"):
        try:
            obj = obj(**params)
        except TypeError as exc:
            raise UsageError(f"{label}: {exc}") from None
    elif params:
        raise UsageError(f"{label} is an instance: it takes no parameters ({sorted(params)})")
    missing = [m for m in REQUIRED if not hasattr(obj, m)]
    if missing:
        raise UsageError(f"{label} is not a family: it lacks {', '.join(missing)}")
    if not isinstance(obj, Family) and not (hasattr(obj, "score") and hasattr(obj, "hessian")):
        return NumericDerivatives(obj)
    return obj


class NumericDerivatives(Family):
    """A duck-typed family without score/hessian, given numerical ones (with error estimates)."""

    derivatives = "numeric"

    def __init__(self, inner):
        self.inner = inner
        self.param_names = tuple(inner.param_names)
        self.name = getattr(inner, "name", type(inner).__name__)
        self.dim = int(getattr(inner, "dim", 1))
        self.discrete = bool(getattr(inner, "discrete", False))
        self.circular = bool(getattr(inner, "circular", False))
        self.complex_safe = bool(getattr(inner, "complex_safe", False))

    def logpdf(self, x, theta):
        """The plug-in's log p_theta(x), as an array of shape (N,)."""
        return np.asarray(self.inner.logpdf(x, theta))

    def valid(self, theta) -> bool:
        """The plug-in's ``valid`` if it has one, else theta finite."""
        if hasattr(self.inner, "valid"):
            return bool(self.inner.valid(theta))
        return super().valid(theta)

    def nodes(self, theta):
        """The plug-in's quadrature rule at theta: nodes (N, dim), weights (N,)."""
        return self.inner.nodes(theta)

    def sample(self, rng, n, theta):
        """The plug-in's n draws at theta, shape (n, dim)."""
        return self.inner.sample(rng, n, theta)

    def cdf(self, x, theta):
        """The plug-in's CDF if it has one, else the base class's."""
        if not hasattr(self.inner, "cdf"):
            return super().cdf(x, theta)
        return self.inner.cdf(x, theta)

    def initial_guess(self, data):
        """The plug-in's starting theta, as a float array (p,)."""
        return np.asarray(self.inner.initial_guess(data), dtype=float)

    def describe(self) -> str:
        """The plug-in's description, marked as using numerical derivatives."""
        if hasattr(self.inner, "describe"):
            return f"{self.inner.describe()} [numerical derivatives]"
        return super().describe()
