"""The theory checks: they run, report well-formed verdicts, are deterministic, and can fail."""

import json

import numpy as np
import pytest

from stability.checks import VERDICTS, all_checks, resolve, run_checks
from stability.checks.prop1 import _loewner_verdict, _smallest_constant
from stability.linalg import random_spd, sqrtm_psd
from stability.runs.jsonsafe import jsonable

# What the paper's claims come to (the findings of this toolkit; see README "Results"). A change
# here is a change of a scientific conclusion and must be explained in the commit.
EXPECTED_VERDICTS = {
    "lemma-a2-eq51": "fails",  # sqrt(A S A) != A^1/2 sqrt(S) A^1/2 for non-commuting A, S
    "lemma-a2-iv": "fails",  # eq (36) fails for anisotropic Sigma_0
    "prop1-multivariate": "fails",  # eq (6) with alpha_d fails for anisotropic Sigma_0
    "prop2-eq59": "fails",  # the printed gradient misses a factor 1/2
    "lemma-e1-eq78": "fails",  # B as defined has the wrong sign
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


def test_failures_carry_counterexamples(quick_results):
    for name in EXPECTED_VERDICTS:
        assert quick_results[name].counterexample is not None, name
    ce = quick_results["prop1-multivariate"].counterexample
    sigma0 = np.asarray(ce["Sigma_0"])
    assert np.linalg.cond(sigma0) > 100  # the counterexample is anisotropic
    assert ce["min_eig_ci"][1] < 0
    # The smallest rate that holds is above alpha_d (its lower 99% bound) and its lower bound
    # does not exceed the 1D alpha(n), which prop1-multivariate-alpha1 shows always holds.
    lo, hi = ce["smallest_constant_ci"]
    assert ce["alpha_d"] < lo <= ce["alpha_1d"] < hi


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


def test_loewner_verdict_can_go_both_ways():
    # Synthetic Monte-Carlo matrices whose mean is known: a clearly negative lambda_min fails,
    # a positive one holds.
    rng = np.random.default_rng(0)

    def rows_for(offset):
        samples = np.diag([1.0, offset])[None] + 0.05 * rng.standard_normal((4000, 2, 2))
        samples = 0.5 * (samples + np.swapaxes(samples, 1, 2))
        from stability.stats import min_eig_interval

        eig, v = min_eig_interval(samples, 0.99)
        row = dict(
            d=2,
            n=5,
            cond=1e4,
            t=1,
            alpha_d=0.9,
            alpha_1d=0.94,
            min_eig=eig.estimate,
            min_eig_ci=eig.as_list(),
            direction=v,
            smallest_constant=0.95,
            smallest_constant_ci=[0.94, 0.96],
        )
        return row, eig

    bad_row, bad = rows_for(-0.2)
    good_row, _ = rows_for(0.2)
    assert _loewner_verdict([bad_row], dict(bad_row, Sigma_0=np.eye(2)), "x")["verdict"] == "fails"
    assert _loewner_verdict([good_row], None, "x")["verdict"] == "holds"


def test_smallest_constant_is_tight():
    rng = np.random.default_rng(2)
    sigma0 = random_spd(3, 100.0, rng)
    m = sqrtm_psd(random_spd(3, 10.0, rng))
    c = _smallest_constant(sigma0, m)
    diff = c * sqrtm_psd(sigma0) - m
    assert np.linalg.eigvalsh(diff)[0] > -1e-10  # m <= c sqrt(Sigma_0)
    assert np.linalg.eigvalsh((c - 1e-6) * sqrtm_psd(sigma0) - m)[0] < 0  # and c is the smallest
