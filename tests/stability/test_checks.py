"""The theory checks: they run, report well-formed verdicts decided with margin, are
deterministic, and can fail."""

import json
import math
import multiprocessing
import os

import numpy as np
import pytest

from stability import checks, gaussian
from stability.checks import VERDICTS, all_checks, resolve, run_checks
from stability.checks.lemma_a2 import loewner, smallest_constant
from stability.checks.props34 import mle_step_moments
from stability.checks.theorem2 import g_inf_closed
from stability.checks.verdict import MARGIN_SE, result
from stability.errors import RunError
from stability.linalg import random_spd, sqrtm_psd
from stability.runs.jsonsafe import jsonable

# What the paper's claims come to (the findings of this toolkit; see README "Results"). A change
# here is a change of a scientific conclusion and must be explained in the commit.
EXPECTED_VERDICTS = {
    "lemma-a2-eq51": "fails",  # sqrt(A S A) != A^1/2 sqrt(S) A^1/2 for non-commuting A, S
    "lemma-a2-eq51-scale": "fails",  # eq (51) prints 1/(n-1) where 1/sqrt(n-1) is meant
    "lemma-a2-iv": "fails",  # eq (36) fails for anisotropic Sigma_0
    "prop1-multivariate": "fails",  # eq (6) with alpha_d fails for anisotropic Sigma_0
    "prop2-eq59": "fails",  # the printed gradient misses a factor 1/2
    "lemma-e1-eq78": "fails",  # B as defined has the wrong sign
}

# The checks whose verdicts rest on Monte-Carlo estimates: each reports margin_se.
MONTE_CARLO = {
    "lemma-a2-ii",
    "lemma-a2-iii",
    "lemma-a2-iv",
    "prop1-1d-montecarlo",
    "prop1-multivariate",
    "prop1-multivariate-alpha1",
    "operator-gaussian",
    "theorem2-gaussian",
    "theorem2-fully-synthetic",
    "lit-gaussian-collapse",
    "lit-accumulate-bound",
    "lit-regression-linear-growth",
    "lit-bernoulli-martingale",
    "lit-gaussian-tail",
    "lit-golden-ratio",
}


@pytest.fixture(scope="module")
def quick_results():
    results, all_ran = run_checks(None, mode="quick", seed=0)
    assert all_ran
    return {r.name: r for r in results}


def test_every_check_ran_with_a_valid_verdict(quick_results):
    assert set(quick_results) == {c.name for c in all_checks()}
    for r in quick_results.values():
        assert r.verdict in VERDICTS
        assert r.claim and r.reference and r.summary
        json.dumps(jsonable(r.to_dict()))  # JSON-safe, including inf/nan


def test_findings(quick_results):
    for name, verdict in EXPECTED_VERDICTS.items():
        assert quick_results[name].verdict == verdict, (name, quick_results[name].summary)
    others = [r for n, r in quick_results.items() if n not in EXPECTED_VERDICTS]
    assert all(r.verdict == "holds" for r in others), [
        (r.name, r.summary) for r in others if r.verdict != "holds"
    ]


def test_monte_carlo_verdicts_are_decided_with_margin(quick_results):
    assert MONTE_CARLO <= set(quick_results)
    for name, r in quick_results.items():
        if name not in MONTE_CARLO:
            assert r.margin_se is None, name
            continue
        assert r.margin_se is not None, name
        assert r.margin_se >= MARGIN_SE, (name, r.margin_se)
        # The interval is the deciding estimate +- 5 standard errors: it excludes the bound.
        lo, hi = r.interval
        assert lo <= r.measured <= hi
        assert not lo <= r.expected <= hi or r.details["decision"]["deciding_sense"] == "<="


def test_failures_carry_counterexamples(quick_results):
    for name in EXPECTED_VERDICTS:
        assert quick_results[name].counterexample is not None, name
    r = quick_results["prop1-multivariate"]
    ce = r.counterexample
    sigma0 = np.asarray(ce["Sigma_0"])
    assert np.linalg.cond(sigma0) > 100  # the counterexample is anisotropic
    assert r.interval[1] < 0  # lambda_min < 0 by more than 5 standard errors
    # The smallest rate that holds is above alpha_d (its lower bound) and its lower bound does
    # not exceed the 1D alpha(n), which prop1-multivariate-alpha1 shows holds.
    lo, hi = ce["smallest_rate_interval"]
    assert ce["alpha_d"] < lo <= ce["alpha_1d"] < hi
    # stability reproduce plots the smallest rate against the condition number from these rows.
    for row in r.details["rows"]:
        assert {"d", "n", "t", "cond", "smallest_constant"} <= set(row)
    assert max(row["cond"] for row in r.details["rows"]) > 1e3
    scale = quick_results["lemma-a2-eq51-scale"].counterexample
    n = scale["n"]
    lhs, printed = np.asarray(scale["lhs_sqrt_Sigma_next"]), np.asarray(scale["printed_rhs"])
    # The printed right-hand side is off by exactly the factor 1/sqrt(n-1).
    np.testing.assert_allclose(printed * math.sqrt(n - 1), lhs, rtol=1e-10)


def test_same_seed_same_numbers_and_selection_independent():
    a, _ = run_checks(["prop1-1d-montecarlo", "lemma-a2-ii"], mode="quick", seed=3)
    b, _ = run_checks(["lemma-a2-ii"], mode="quick", seed=3)
    c, _ = run_checks(["lemma-a2-ii"], mode="quick", seed=4)
    assert a[1].details == b[0].details
    assert a[1].measured == b[0].measured
    assert c[0].measured != b[0].measured


def test_resolve_by_group_and_unknown_name():
    assert {c.group for c in resolve(["prop2"])} == {"prop2"}
    with pytest.raises(ValueError, match="unknown check"):
        resolve(["no-such-check"])


def test_old_group_names_select_what_they_did():
    names = lambda sel: {c.name for c in resolve([sel])}  # noqa: E731
    assert names("operator") == {"operator-gaussian", "operator-nonlinear"}
    prop1 = names("prop1")
    assert {"alpha-symbolic", "lemma-a2-iv", "lemma-a2-eq51-scale", "prop1-multivariate"} <= prop1
    assert all(c.group in ("lemma-a1", "lemma-a2", "prop1") for c in resolve(["prop1"]))
    theorem1 = names("theorem1")
    assert {"prop3-unique-maximiser", "prop4-fixed-point", "lemma-e1-eq78"} <= theorem1
    assert {"theorem1-bound", "theorem1-convergence"} <= theorem1
    assert not theorem1 & names("operator")
    # Every check is reachable from exactly one of the old groups (literature is new).
    old = ["prop1", "prop2", "operator", "theorem1", "theorem2", "literature"]
    counts = [sum(c.name in names(g) for g in old) for c in all_checks()]
    assert counts == [1] * len(counts)


def _loewner_samples(offset, rng):
    """Symmetric matrices of known mean diag(1, offset), shape (4000, 2, 2)."""
    samples = np.diag([1.0, offset])[None] + 0.05 * rng.standard_normal((4000, 2, 2))
    return 0.5 * (samples + np.swapaxes(samples, 1, 2))


def test_loewner_verdict_can_go_both_ways():
    # Synthetic Monte-Carlo matrices whose mean is known: a clearly negative lambda_min fails,
    # a positive one holds, one within noise of 0 is inconclusive.
    rng = np.random.default_rng(0)
    bad = loewner(_loewner_samples(-0.2, rng), case="bad")
    good = loewner(_loewner_samples(0.2, rng), case="good")
    edge = loewner(_loewner_samples(0.0, rng), case="edge")
    assert bad.verdict == "fails" and bad.margin_se <= -MARGIN_SE
    assert good.verdict == "holds" and good.margin_se >= MARGIN_SE
    assert edge.verdict == "inconclusive"
    out = result([good, bad], summary="x")
    assert out["verdict"] == "fails"
    assert out["counterexample"]["case"] == "bad"
    assert result([good], summary="x")["verdict"] == "holds"
    assert result([good, edge], summary="x")["verdict"] == "inconclusive"


def test_smallest_constant_is_tight():
    rng = np.random.default_rng(2)
    sigma0 = random_spd(3, 100.0, rng)
    m = sqrtm_psd(random_spd(3, 10.0, rng))
    c = smallest_constant(sigma0, m)
    diff = c * sqrtm_psd(sigma0) - m
    assert np.linalg.eigvalsh(diff)[0] > -1e-10  # m <= c sqrt(Sigma_0)
    assert np.linalg.eigvalsh((c - 1e-6) * sqrtm_psd(sigma0) - m)[0] < 0  # and c is the smallest


def test_mle_step_moments_on_hand_derived_cases():
    rng = np.random.default_rng(5)
    c1, c2 = random_spd(2, 10.0, rng), random_spd(2, 3.0, rng)
    m1, m2 = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    # Two points, one of each: E[Sigma'] = (C1 + C2 + (m1 - m2)(m1 - m2)^T) / 4.
    mean, cov = mle_step_moments(m2, c2, 1.0, 1, m1, c1)
    np.testing.assert_allclose(mean, (m1 + m2) / 2, rtol=1e-14)
    np.testing.assert_allclose(cov, (c1 + c2 + np.outer(m1 - m2, m1 - m2)) / 4, rtol=1e-14)
    # Real data only (lam = 0) or model samples only (lam = inf): the biased sample covariance.
    np.testing.assert_allclose(mle_step_moments(m2, c2, 0.0, 7, m1, c1)[1], c1 * 6 / 7)
    np.testing.assert_allclose(mle_step_moments(m2, c2, math.inf, 7, m1, c1)[1], c2 * 6 / 7)
    np.testing.assert_allclose(mle_step_moments(m2, c2, math.inf, 7, m1, c1)[0], m2)


def test_independent_g_inf_agrees_with_the_toolkit():
    rng = np.random.default_rng(6)
    mu, dm = rng.standard_normal(2), rng.standard_normal(2)
    cov, dc = random_spd(2, 5.0, rng), random_spd(2, 20.0, rng)
    for lam in (0.0, 0.3, 1.0, 7.0):
        ours = g_inf_closed(mu, cov, lam, dm, dc)
        theirs = gaussian.g_inf(mu, cov, lam, dm, dc)
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12, atol=1e-14)


# ---- the parallel runner ---------------------------------------------------------------------

FORK = "fork" in multiprocessing.get_all_start_methods()


@pytest.mark.skipif(not FORK, reason="the pool's workers see test-registered checks only by fork")
def test_parallel_run_equals_the_serial_run_except_seconds():
    names = ["lemma-a2-ii", "prop2-eq59", "lit-gaussian-tail", "alpha-bounds", "lemma-a2-i"]
    serial, ok1 = run_checks(names, mode="quick", seed=1, jobs=1)
    done = []
    parallel, ok2 = run_checks(names, mode="quick", seed=1, jobs=2, on_done=done.append)
    assert ok1 and ok2
    assert sorted(r.name for r in done) == sorted(r.name for r in serial)

    def without_seconds(results):
        return [{k: v for k, v in jsonable(r.to_dict()).items() if k != "seconds"} for r in results]

    assert [r.name for r in parallel] == [r.name for r in serial]  # the order asked for
    assert json.dumps(without_seconds(parallel)) == json.dumps(without_seconds(serial))


def test_tasks_keep_shared_state_together_and_start_longest_first():
    specs = resolve(["alpha-bounds", "theorem2", "theorem1", "prop1-multivariate-alpha1"])
    plan = checks.tasks(specs)
    assert sorted(i for task in plan for i in task) == list(range(len(specs)))
    groups = [{specs[i].group for i in task} for task in plan]
    assert {"theorem2"} in groups
    assert {"props34", "lemma-e1", "theorem1"} in groups
    cost = [sum(checks.EXPECTED_SECONDS.get(specs[i].name, 0.1) for i in t) for t in plan]
    assert cost == sorted(cost, reverse=True)
    assert [specs[i].name for i in plan[-1]] == ["alpha-bounds"]


@pytest.fixture
def broken_checks():
    """Two checks registered for one test: one raises, one kills its worker process."""

    def raises(ctx):
        raise ValueError("boom")

    def dies(ctx):
        os._exit(3)

    added = {
        "test-raises": checks.CheckSpec("test-raises", "c", "r", raises, "literature"),
        "test-dies": checks.CheckSpec("test-dies", "c", "r", dies, "literature"),
    }
    checks.all_checks()
    checks.REGISTRY.update(added)
    yield added
    for name in added:
        checks.REGISTRY.pop(name)


@pytest.mark.skipif(not FORK, reason="the pool's workers see test-registered checks only by fork")
def test_a_check_that_raises_in_a_worker_is_reported_and_one_that_dies_is_a_run_error(
    broken_checks,
):
    results, all_ran = run_checks(["test-raises", "alpha-bounds"], mode="quick", jobs=2)
    assert not all_ran
    assert results[0].verdict == "inconclusive" and "boom" in results[0].summary
    assert results[1].verdict == "holds"
    with pytest.raises(RunError, match="test-dies"):
        run_checks(["test-dies", "alpha-bounds"], mode="quick", jobs=2)


def test_jobs_must_be_positive():
    with pytest.raises(ValueError, match="jobs"):
        run_checks(["alpha-bounds"], jobs=0)
