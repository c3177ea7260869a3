"""``--family`` specifications: a shipped family by name, a formula, or the researcher's code.

- ``student-t:nu=4``, ``gaussian:d=2``, ``categorical:k=3``: a shipped family and its options;
- ``sympy:FORMULA[; params=m,s; positive=s; start=0,1; support=0,inf; discrete=1]``: a
  normalised log density in x (see `ExpressionFamily`);
- ``path/to/file.py:Name[:key=value,...]`` or ``package.module:Name[:key=value,...]``: a
  class, factory or instance from code (see `stability.families.plugins`);
- a name registered by another package under the entry points ``retrain_stability.families``.
"""

from __future__ import annotations

import inspect
import math

from stability.errors import UsageError
from stability.families import plugins
from stability.families.categorical import CategoricalFamily
from stability.families.exponential import ExponentialFamily
from stability.families.gaussian import GaussianFamily
from stability.families.gaussian_mixture import GaussianMixtureFamily
from stability.families.laplace import LaplaceFamily
from stability.families.means_mixture import MeansMixtureFamily
from stability.families.poisson import PoissonFamily
from stability.families.student_t import StudentTFamily
from stability.families.symbolic import ExpressionFamily
from stability.families.von_mises import VonMisesFamily
from stability.specs import parse_params, parse_value, split_spec, split_top_level

SHIPPED = {
    "gaussian": GaussianFamily,
    "student-t": StudentTFamily,
    "laplace": LaplaceFamily,
    "exponential": ExponentialFamily,
    "poisson": PoissonFamily,
    "bernoulli": lambda: CategoricalFamily(2),
    "categorical": CategoricalFamily,
    "von-mises": VonMisesFamily,
    "gaussian-mixture": GaussianMixtureFamily,
    "means-mixture": MeansMixtureFamily,
}
ALIASES = {
    "normal": "gaussian",
    "t": "student-t",
    "studentt": "student-t",
    "expon": "exponential",
    "vonmises": "von-mises",
    "gmm": "gaussian-mixture",
}


def family_names() -> list[str]:
    """Names accepted by `make_family` (shipped, then entry points)."""
    return [*SHIPPED, *sorted(plugins.entry_point_names())]


def make_family(spec: str):
    """The family a ``--family`` specification names (raises UsageError if it cannot)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("empty --family")
    spec = spec.strip()
    if spec.lower().startswith("sympy:"):
        return expression_family(spec[len("sympy:") :], spec)
    if ".py:" in spec:
        path, _, rest = spec.partition(".py:")
        name, _, params = rest.partition(":")
        return plugins.instantiate(
            plugins.load_from_file(path + ".py", name.strip()), parse_params(params, spec), spec
        )
    head = spec.partition(":")[0].strip().lower()
    name = ALIASES.get(head, head)
    if name in SHIPPED:
        return _construct(SHIPPED[name], split_spec(spec)[1], spec)
    if name in plugins.entry_point_names():
        return plugins.instantiate(plugins.load_entry_point(name), split_spec(spec)[1], spec)
    module, _, rest = spec.partition(":")
    attr, _, params_text = rest.partition(":")
    if "." in module and attr.isidentifier():
        obj = plugins.load_from_module(module, attr)
        return plugins.instantiate(obj, parse_params(params_text, spec), spec)
    raise UsageError(
        f"unknown family {spec!r}; choose one of {', '.join(family_names())}, 'sympy:FORMULA', "
        "file.py:Name or package.module:Name"
    )


def _construct(factory, params: dict, spec: str):
    try:
        accepted = set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        accepted = set()
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise UsageError(
            f"family {spec!r} has no parameter {', '.join(unknown)}"
            + (f"; it takes {', '.join(sorted(accepted))}" if accepted else "")
        )
    bad = [k for k, v in params.items() if not isinstance(v, float)]
    if bad:
        raise UsageError(f"parameter {bad[0]} of {spec!r} must be a number")
    try:
        return factory(**params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"family {spec!r}: {exc}") from None


def expression_family(text: str, spec: str) -> ExpressionFamily:
    """Parse ``FORMULA[; key=value ...]`` into an `ExpressionFamily`."""
    formula, *options = [part.strip() for part in text.split(";")]
    if not formula:
        raise UsageError(f"{spec!r} gives no formula after 'sympy:'")
    kwargs: dict = {}
    for option in options:
        if not option:
            continue
        key, eq, value = option.partition("=")
        key = key.strip()
        if not eq:
            raise UsageError(f"bad option {option!r} in {spec!r}: write key=value")
        items = split_top_level(value)
        if key in ("params", "positive"):
            kwargs[key] = [v for v in items if v]
        elif key in ("start", "support"):
            values = [parse_value(v) for v in items]
            if not all(isinstance(v, float) for v in values):
                raise UsageError(f"{key} in {spec!r} must be numbers")
            kwargs[key] = values
        elif key == "discrete":
            kwargs[key] = value.strip() not in ("0", "false", "no", "")
        else:
            raise UsageError(
                f"unknown option {key!r} in {spec!r}; use params, positive, start, support, discrete"
            )
    support = kwargs.get("support")
    if support is not None and (len(support) != 2 or not support[0] < support[1]):
        raise UsageError(f"support in {spec!r} must be two numbers lo < hi")
    if support is None and kwargs.get("discrete"):
        kwargs["support"] = (0.0, math.inf)
    return ExpressionFamily(formula, **kwargs)
