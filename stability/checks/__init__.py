"""The theory checks: every numbered claim of the paper, measured independently.

Each check has a stable name, states its claim with the equation number, measures it (closed
form, quadrature, Monte-Carlo with confidence intervals, finite differences) and returns a
verdict: "holds", "fails" (with a counterexample) or "inconclusive". A failing check is a result
about the paper, not an error of the toolkit.
"""

from __future__ import annotations

import datetime
import math
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

VERDICTS = ("holds", "fails", "inconclusive")
MODES = ("quick", "default", "thorough")


@dataclass
class CheckResult:
    """The outcome of one check (the JSON contract of `stability check --json`)."""

    name: str
    claim: str
    reference: str
    verdict: str
    measured: float
    expected: float
    summary: str = ""
    interval: list | None = None
    details: dict = field(default_factory=dict)
    counterexample: dict | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        return _jsonable(out)


def _jsonable(obj):
    """Convert numpy scalars/arrays, non-finite floats and TOML dates to JSON-safe values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (datetime.date, datetime.time)):
        return obj.isoformat()
    return obj


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
    from stability.checks import operator_checks, prop1, prop2, theorem2  # noqa: F401


GROUP_ORDER = ("prop1", "prop2", "operator", "theorem1", "theorem2")


def all_checks() -> list[CheckSpec]:
    """Every registered check, in the order of the paper."""
    _load_all()
    return sorted(REGISTRY.values(), key=lambda c: GROUP_ORDER.index(c.group))


def resolve(names: list[str] | None) -> list[CheckSpec]:
    """Checks selected by name or group (e.g. 'prop1'); all when names is empty.

    Raises ValueError naming the first unknown name.
    """
    checks = all_checks()
    if not names:
        return checks
    chosen = []
    for n in names:
        matches = [c for c in checks if c.name == n or c.group == n]
        if not matches:
            raise ValueError(f"unknown check {n!r}; see `stability check --list`")
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
    progress: bool = False,
) -> tuple[list[CheckResult], bool]:
    """Run the selected checks; returns (results, all_ran)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    specs = resolve(names)
    ctx = Context(mode=mode, seed=int(seed))
    results, all_ran = [], True
    iterator = specs
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(specs, desc="checks", unit="check", leave=False)
        iterator = bar
    for spec in iterator:
        if bar is not None:
            bar.set_postfix_str(spec.name)
        res, ran = run_check(spec, ctx)
        results.append(res)
        all_ran &= ran
    return results, all_ran


def verdict_from(ok: bool, rejected: bool) -> str:
    """'fails' when the claim is rejected, 'holds' when it is consistent, else 'inconclusive'."""
    if rejected:
        return "fails"
    return "holds" if ok else "inconclusive"
