"""``--data`` specifications.

- ``laplace``, ``t:df=3``, ``gamma:a=2,scale=0.5``, ``poisson:mu=3``: a scipy.stats
  distribution (continuous or discrete) and its keyword parameters;
- ``categorical:p=[0.2,0.3,0.5]``: a distribution on the labels 0..K-1;
- ``0.3*norm:loc=-1 + 0.7*laplace:loc=2``: a mixture of any of the above;
- ``path/to/sample.npy`` (or ``.csv``, ``.txt``): a sample of points, shape (n,) or (n, d);
- ``grid:path/to/density.npy`` (or ``.csv``, ``.txt``): a density tabulated at points.
"""

from __future__ import annotations

import re

import numpy as np

from stability.datasources.grid import GridData
from stability.datasources.mixture import MixtureData
from stability.datasources.sample import SampleData
from stability.datasources.scipy_dist import ScipyData
from stability.errors import UsageError
from stability.specs import split_spec, split_top_level

SAMPLE_SUFFIXES = (".npy", ".csv", ".txt")
# A '+' that starts a new weighted component ("+ 0.7*"), not the sign of an exponent (1e+3).
_COMPONENT = re.compile(r"\+(?=\s*[0-9.]+(?:[eE][-+]?[0-9]+)?\s*\*)")


def make_data(spec: str):
    """The data source a ``--data`` specification names (raises UsageError if it cannot)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("empty --data")
    spec = spec.strip()
    if spec.lower().startswith("grid:"):
        return GridData.load(spec[len("grid:") :].strip())
    if spec.lower().endswith(SAMPLE_SUFFIXES):
        return SampleData.load(spec)
    parts = _COMPONENT.split(spec)
    if len(parts) > 1 or re.match(r"^\s*[0-9.]+(?:[eE][-+]?[0-9]+)?\s*\*", spec):
        return MixtureData([_component(part, spec) for part in parts])
    return _single(spec)


def _component(text: str, spec: str):
    weight, star, rest = text.partition("*")
    try:
        w = float(weight)
    except ValueError:
        raise UsageError(f"mixture component {text.strip()!r} of {spec!r}: write W*DATA") from None
    if not star or not rest.strip():
        raise UsageError(f"mixture component {text.strip()!r} of {spec!r}: write W*DATA")
    return w, _single(rest.strip())


def _single(spec: str):
    name, params = split_spec(spec)
    if name == "categorical":
        return categorical_data(params, spec)
    return ScipyData(name, params)


def categorical_data(params: dict, spec: str) -> ScipyData:
    """Labels 0..K-1 with probabilities p (a list), as a scipy discrete distribution."""
    from scipy import stats

    p = params.get("p")
    if set(params) != {"p"} or not isinstance(p, list) or len(p) < 2:
        raise UsageError(f"{spec!r}: write categorical:p=[p0,p1,...] (at least two classes)")
    probs = np.asarray([float(v) for v in p if isinstance(v, float)])
    if probs.size != len(p) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0, atol=1e-9):
        raise UsageError(f"{spec!r}: the probabilities must be >= 0 and sum to 1")
    dist = stats.rv_discrete(values=(np.arange(probs.size), probs / probs.sum()))
    return ScipyData("categorical", {}, dist=dist)


def split_mixture(spec: str) -> list[str]:
    """The components of a mixture specification, as written (for messages and tests)."""
    return [p.strip() for p in _COMPONENT.split(spec)] if "*" in spec else [spec]


__all__ = ["make_data", "split_mixture", "split_top_level"]
