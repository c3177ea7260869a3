"""The theory checks: every numbered claim of the paper, measured independently.

Each check has a stable name, states its claim with the equation number, measures it (closed
form, quadrature, Monte-Carlo with standard errors, finite differences) and returns a verdict:
"holds", "fails" (with a counterexample) or "inconclusive", decided from its measurements by
the one rule of `stability.checks.verdict`. A failing check is a result about the paper, not an
error of the toolkit.

One module per paper object, in the order of the paper (each module's checks form a group):
lemma_a1 (alpha(n)), lemma_a2, prop1, prop2, props34 (the operator G_lambda, Propositions 3-4),
lemma_e1, theorem1, theorem2. The group names of earlier versions still select what they did:
"prop1" also selects Lemmas A.1-A.2 (its proof), "theorem1" also Propositions 3-4 and Lemma E.1,
"operator" the two checks of G_lambda itself.
"""

from __future__ import annotations

import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from stability.errors import UsageError

VERDICTS = ("holds", "fails", "inconclusive")
MODES = ("quick", "default", "thorough")


@dataclass
class CheckResult:
    """The outcome of one check (the JSON contract of `stability check --json`).

    `margin_se` is set for Monte-Carlo checks: the distance of the deciding estimate from the
    claim's bound in standard errors (>= 5 when the verdict is "holds" or "fails").
    """

    name: str
    claim: str
    reference: str
    verdict: str
    measured: float
    expected: float
    summary: str = ""
    interval: list | None = None
    margin_se: float | None = None
    details: dict = field(default_factory=dict)
    counterexample: dict | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The result as a plain dict (numpy values kept; `stability.runs.jsonsafe` makes it
        JSON-safe)."""
        return asdict(self)


@dataclass(frozen=True)
class Context:
    """What a check may depend on: the mode (sizes) and the seed."""

    mode: str = "default"
    seed: int = 0

    def size(self, quick, default, thorough):
        """Pick a size by mode."""
        return {"quick": quick, "default": default, "thorough": thorough}[self.mode]

    def rng(self, name: str, *keys: int) -> np.random.Generator:
        """A generator that depends only on (seed, check name, keys): independent of which
        other checks run or in which order."""
        ss = np.random.SeedSequence([self.seed, zlib.crc32(name.encode()), *keys])
        return np.random.default_rng(ss)


@dataclass(frozen=True)
class CheckSpec:
    name: str
    claim: str
    reference: str
    func: Callable[[Context], CheckResult]
    group: str


REGISTRY: dict[str, CheckSpec] = {}


def register(name: str, claim: str, reference: str, group: str):
    """Decorator: register a check function f(ctx) -> dict of CheckResult fields."""

    def deco(func):
        if name in REGISTRY:
            raise RuntimeError(f"duplicate check name {name}")
        REGISTRY[name] = CheckSpec(name, claim, reference, func, group)
        return func

    return deco


def _load_all() -> None:
    # Importing the modules registers their checks, in the order of the paper.
    from stability.checks import (  # noqa: F401
        lemma_a1,
        lemma_a2,
        lemma_e1,
        literature,
        prop1,
        prop2,
        props34,
        theorem1,
        theorem2,
    )


GROUP_ORDER = (
    "lemma-a1",
    "lemma-a2",
    "prop1",
    "prop2",
    "props34",
    "lemma-e1",
    "theorem1",
    "theorem2",
    "literature",
)

# Selections by the group names of earlier versions (README, scripts): a proposition or theorem
# selects the checks of the lemmas its proof uses, as it did when they shared a module.
ALIASES = {
    "prop1": ("lemma-a1", "lemma-a2", "prop1"),
    "theorem1": ("props34", "lemma-e1", "theorem1"),
}
OPERATOR_CHECKS = ("operator-gaussian", "operator-nonlinear")


def _selects(name: str, spec: CheckSpec) -> bool:
    if name == "operator":
        return spec.name in OPERATOR_CHECKS
    if name in ALIASES:
        return spec.group in ALIASES[name] and not (
            name == "theorem1" and spec.name in OPERATOR_CHECKS
        )
    return spec.name == name or spec.group == name


def all_checks() -> list[CheckSpec]:
    """Every registered check, in the order of the paper."""
    _load_all()
    return sorted(REGISTRY.values(), key=lambda c: GROUP_ORDER.index(c.group))


def resolve(names: list[str] | None) -> list[CheckSpec]:
    """Checks selected by name, group (e.g. 'lemma-a2') or alias ('prop1', 'operator'); all
    when names is empty; in the order asked for (a group's checks in the order of the paper).

    Raises UsageError (a ValueError) naming the first unknown name.
    """
    checks = all_checks()
    if not names:
        return checks
    chosen = []
    for n in names:
        matches = [c for c in checks if _selects(n, c)]
        if not matches:
            raise UsageError(f"unknown check {n!r}; see `stability check --list`")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def run_check(spec: CheckSpec, ctx: Context) -> tuple[CheckResult, bool]:
    """Run one check; returns (result, ran). A crash gives verdict 'inconclusive', ran=False."""
    start = time.perf_counter()
    try:
        fields = spec.func(ctx)
        ran = True
    except Exception as exc:  # a check that cannot run is reported, not raised
        fields = dict(
            verdict="inconclusive",
            measured=float("nan"),
            expected=float("nan"),
            summary=f"could not run: {type(exc).__name__}: {exc}",
            details={"traceback": traceback.format_exc(limit=5)},
        )
        ran = False
    if fields["verdict"] not in VERDICTS:
        raise RuntimeError(f"check {spec.name} returned verdict {fields['verdict']!r}")
    result = CheckResult(
        name=spec.name,
        claim=spec.claim,
        reference=spec.reference,
        seconds=time.perf_counter() - start,
        **fields,
    )
    return result, ran


def run_checks(
    names: list[str] | None = None,
    mode: str = "default",
    seed: int = 0,
    on_start: Callable[[CheckSpec], None] | None = None,
) -> tuple[list[CheckResult], bool]:
    """Run the selected checks in the order of the paper.

    Parameters
    ----------
    names : list of str, optional
        Check names or groups; all checks when None or empty.
    mode : {"quick", "default", "thorough"}
        Sizes of the Monte-Carlo and quadrature designs.
    seed : int
        Seed of every Monte-Carlo check (each check draws its own independent stream).
    on_start : callable, optional
        Called with each check's spec before it runs (the command line's progress bar).

    Returns
    -------
    results : list of CheckResult
    all_ran : bool
        False when some check could not run (its verdict is then "inconclusive").
    """
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    specs = resolve(names)
    ctx = Context(mode=mode, seed=int(seed))
    results, all_ran = [], True
    for spec in specs:
        if on_start is not None:
            on_start(spec)
        res, ran = run_check(spec, ctx)
        results.append(res)
        all_ran &= ran
    return results, all_ran
