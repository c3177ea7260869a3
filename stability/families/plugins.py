"""Families from the researcher's code: ``file.py:Name``, ``package.module:Name``, entry points.

The object named may be a class (called with the specification's parameters), a factory
function (likewise) or a ready instance. It must have ``logpdf``, ``nodes``, ``sample``,
``initial_guess`` and ``param_names``; a subclass of `stability.families.Family` has all the
rest by default, and a duck-typed object without ``score``/``hessian`` gets numerical ones.
Another package registers families under the entry-point group ``retrain_stability.families``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

from stability.errors import UsageError
from stability.families.base import Family

ENTRY_POINT_GROUP = "retrain_stability.families"
REQUIRED = ("logpdf", "nodes", "sample", "initial_guess", "param_names")


def load_from_file(path: str, name: str):
    """The object `name` defined in the Python file `path` (executed as a fresh module)."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such family file: {path}")
    module_name = f"stability_user_family_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise UsageError(f"cannot import {path}: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, name):
        raise UsageError(f"{path} defines no {name!r}")
    return getattr(module, name)


def load_from_module(module: str, name: str):
    """The object `name` of the importable module `module`."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module!r}: {exc}") from None
    if not hasattr(mod, name):
        raise UsageError(f"module {module!r} defines no {name!r}")
    return getattr(mod, name)


def entry_point_families() -> dict:
    """Families registered by installed packages: name -> entry point."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


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
        return np.asarray(self.inner.logpdf(x, theta))

    def valid(self, theta) -> bool:
        if hasattr(self.inner, "valid"):
            return bool(self.inner.valid(theta))
        return super().valid(theta)

    def nodes(self, theta):
        return self.inner.nodes(theta)

    def sample(self, rng, n, theta):
        return self.inner.sample(rng, n, theta)

    def cdf(self, x, theta):
        if not hasattr(self.inner, "cdf"):
            return super().cdf(x, theta)
        return self.inner.cdf(x, theta)

    def initial_guess(self, data):
        return np.asarray(self.inner.initial_guess(data), dtype=float)

    def describe(self) -> str:
        if hasattr(self.inner, "describe"):
            return f"{self.inner.describe()} [numerical derivatives]"
        return super().describe()
