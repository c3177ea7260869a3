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

import multiprocessing
import os
import time
import traceback
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field

import numpy as np

from stability.errors import RunError, UsageError

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
    """A registered check: what `stability check --list` shows and the function that runs it.

    Parameters
    ----------
    name : str
        Stable name (what `stability check NAME` selects and the JSON reports).
    claim : str
        The claim as the paper states it, with what is measured.
    reference : str
        Where in the paper (lemma, proposition, equation numbers) or the literature.
    func : callable
        ``func(ctx: Context) -> dict`` of CheckResult fields (verdict, measured, expected, ...).
    group : str
        The module's group (one of GROUP_ORDER), selectable by name.
    """

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


# Checks that share a per-process cache run in one task, one after the other, so that a pool
# computes the shared part once: theorem2's two checks share Assumption 3's constants
# (`theorem2._constants`); Propositions 3-4, Lemma E.1 and Theorem 1 share the operators and
# their finite-difference Jacobians (`props34.operators`, `props34.jacobian_fd`).
SHARED_STATE = (("theorem2",), ("props34", "lemma-e1", "theorem1"))

# Default-mode CPU seconds of the slower checks (seed 0, measured one after the other in one
# process on the 2-core machine): they only decide the order in which a pool starts its tasks
# (longest first), never a result. A check not listed counts as 0.1 s.
EXPECTED_SECONDS = {
    "theorem2-gaussian": 5.0,
    "prop2-lipschitz": 2.5,
    "theorem2-fully-synthetic": 2.4,
    "lemma-a2-iv": 2.4,
    "prop1-multivariate": 2.3,
    "prop3-unique-maximiser": 2.2,
    "prop1-1d-montecarlo": 1.9,
    "operator-gaussian": 1.5,
    "prop1-multivariate-alpha1": 1.3,
    "operator-nonlinear": 1.2,
    "alpha-symbolic": 1.1,
    "alpha-asymptotic": 1.0,
    "lit-accumulate-bound": 0.9,
    "prop2-eq59": 0.8,
    "lemma-a2-iii": 0.7,
    "lemma-a2-ii": 0.7,
    "lemma-e1-eq76": 0.7,
    "lit-bernoulli-martingale": 0.6,
    "theorem1-convergence": 0.6,
    "theorem1-bound": 0.5,
    "prop2-derivatives": 0.4,
    "lit-golden-ratio": 0.4,
    "lit-regression-linear-growth": 0.3,
    "lit-gaussian-collapse": 0.2,
}


def default_jobs() -> int:
    """The cores this process may run on (its CPU affinity where the platform reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def tasks(specs: list[CheckSpec]) -> list[list[int]]:
    """The selected checks (indices into `specs`) cut into the tasks of a pool, longest first.

    A task is one check, or the selected checks of one SHARED_STATE set in the order asked;
    tasks are sorted by their EXPECTED_SECONDS (ties in the order asked).
    """
    out: list[list[int]] = []
    where: dict[int, int] = {}
    for i, spec in enumerate(specs):
        shared = next((k for k, g in enumerate(SHARED_STATE) if spec.group in g), None)
        if shared is None:
            out.append([i])
        elif shared in where:
            out[where[shared]].append(i)
        else:
            where[shared] = len(out)
            out.append([i])

    def cost(task):
        return sum(EXPECTED_SECONDS.get(specs[i].name, 0.1) for i in task)

    return sorted(out, key=lambda task: -cost(task))


def _run_task(names: tuple[str, ...], mode: str, seed: int) -> list[tuple[CheckResult, bool]]:
    """One task of a pool (in a worker process): the named checks, one after the other."""
    _load_all()
    ctx = Context(mode=mode, seed=seed)
    return [run_check(REGISTRY[name], ctx) for name in names]


def _pool_context():
    # fork starts a worker in milliseconds with every check module already imported (the
    # parent resolved the selection); spawn and forkserver import numpy, scipy and sympy again
    # in each worker. The parent runs no check before forking, so no BLAS or numba thread pool
    # is copied in a busy state.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _run_pool(specs, ctx, jobs, on_start, on_done) -> list[tuple[CheckResult, bool]]:
    plan = tasks(specs)
    out: list = [None] * len(specs)
    workers = min(jobs, len(plan))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        futures = {}
        for task in plan:  # the pool starts its tasks in the order they were submitted
            names = tuple(specs[i].name for i in task)
            futures[pool.submit(_run_task, names, ctx.mode, ctx.seed)] = task
            if on_start is not None:
                for i in task:
                    on_start(specs[i])
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                done = fut.result()
            except BrokenProcessPool as exc:
                names = ", ".join(specs[i].name for i in task)
                raise RunError(f"a worker process running check {names} died ({exc})") from None
            for i, (res, ran) in zip(task, done):
                out[i] = (res, ran)
                if on_done is not None:
                    on_done(res)
    return out


def run_checks(
    names: list[str] | None = None,
    mode: str = "default",
    seed: int = 0,
    on_start: Callable[[CheckSpec], None] | None = None,
    jobs: int = 1,
    on_done: Callable[[CheckResult], None] | None = None,
) -> tuple[list[CheckResult], bool]:
    """Run the selected checks; the results come in the order of the paper (or as asked).

    Every check draws from its own stream (`Context.rng`: seed and check name), so the
    results do not depend on `jobs` or on the schedule: only `seconds` differs.

    Parameters
    ----------
    names : list of str, optional
        Check names or groups; all checks when None or empty.
    mode : {"quick", "default", "thorough"}
        Sizes of the Monte-Carlo and quadrature designs.
    seed : int
        Seed of every Monte-Carlo check (each check draws its own independent stream).
    on_start : callable, optional
        Called with each check's spec before it runs (with jobs > 1: when it is handed to
        the pool).
    jobs : int
        Worker processes; 1 runs the checks one after the other in this process. With more,
        a process pool (fork where the platform has it) runs them, longest first.
    on_done : callable, optional
        Called with each CheckResult as it finishes (the command line's progress bar).

    Returns
    -------
    results : list of CheckResult
    all_ran : bool
        False when some check could not run (its verdict is then "inconclusive").

    Raises
    ------
    UsageError
        An unknown name, mode, or jobs < 1.
    RunError
        A worker process died (killed, out of memory) before returning its checks.
    """
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if int(jobs) < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    specs = resolve(names)
    ctx = Context(mode=mode, seed=int(seed))
    if int(jobs) == 1 or len(specs) <= 1:
        pairs = []
        for spec in specs:
            if on_start is not None:
                on_start(spec)
            pairs.append(run_check(spec, ctx))
            if on_done is not None:
                on_done(pairs[-1][0])
    else:
        pairs = _run_pool(specs, ctx, int(jobs), on_start, on_done)
    return [res for res, _ in pairs], all(ran for _, ran in pairs)
