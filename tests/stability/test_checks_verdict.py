"""The verdict rule every check uses (stability.checks.verdict)."""

import math

import pytest

from stability.checks.verdict import MARGIN_SE, Measured, decide, equal, result


def test_exact_measurements_are_decided_by_the_side_of_the_bound():
    assert Measured(1e-12, 1e-10).verdict == "holds"
    assert Measured(2e-10, 1e-10).verdict == "fails"
    assert Measured(0.3, 0.2, ">=").verdict == "holds"
    assert Measured(0.1, 0.2, ">=").verdict == "fails"
    assert Measured(math.nan, 1.0).verdict == "inconclusive"
    assert Measured(1.0, 1.0).margin_se is None


@pytest.mark.parametrize(
    "value,verdict",
    [
        (0.0, "holds"),
        (1.0 - MARGIN_SE * 0.1, "holds"),
        (0.9, "inconclusive"),
        (1.0 + MARGIN_SE * 0.1 - 1e-9, "inconclusive"),
        (1.0 + MARGIN_SE * 0.1, "fails"),
    ],
)
def test_monte_carlo_measurements_need_five_standard_errors(value, verdict):
    m = Measured(value, 1.0, "<=", se=0.1)
    assert m.verdict == verdict
    assert m.margin_se == pytest.approx((1.0 - value) / 0.1)


def test_equal_is_an_equivalence_test():
    assert equal(1.01, 1.0, 0.1, se=0.01).verdict == "holds"  # 9 se inside the tolerance
    assert equal(1.2, 1.0, 0.1, se=0.01).verdict == "fails"  # 10 se outside
    assert equal(1.08, 1.0, 0.1, se=0.01).verdict == "inconclusive"  # 2 se inside
    assert equal(0.8, 1.0, 0.1).shown == (0.8, 1.0)


def test_decide_fails_on_the_strongest_failure_and_controls_override():
    weak = Measured(1.6, 1.0, se=0.1, case=dict(k="weak"))
    strong = Measured(3.0, 1.0, se=0.1, case=dict(k="strong"))
    ok = Measured(0.0, 1.0, se=0.1, case=dict(k="ok"))
    assert decide([ok, weak, strong]) == ("fails", strong)
    assert decide([ok]) == ("holds", ok)
    broken = Measured(1.0, 0.0, case=dict(k="control"))
    verdict, head = decide([ok, strong], controls=[broken])
    assert (verdict, head) == ("inconclusive", broken)
    with pytest.raises(ValueError):
        decide([])


def test_result_fields():
    ok = Measured(0.0, 1.0, se=0.1, case=dict(k="ok"))
    close = Measured(0.4, 1.0, se=0.1, case=dict(k="close"))
    out = result([ok, close], summary="s")
    assert out["verdict"] == "holds"
    assert out["margin_se"] == pytest.approx(6.0)  # the closest estimate decides
    assert out["interval"] == pytest.approx([0.4 - MARGIN_SE * 0.1, 0.4 + MARGIN_SE * 0.1])
    assert out["counterexample"] is None
    bad = result([Measured(2.0, 1.0, case=dict(k="bad"))], summary="s")
    assert bad["verdict"] == "fails" and bad["margin_se"] is None
    assert bad["counterexample"] == dict(k="bad", measured=2.0, bound=1.0)
    assert bad["interval"] is None
