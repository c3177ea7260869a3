"""The exact assignment solver (simulations.assignment) against scipy, POT and its own certificate."""

from __future__ import annotations

import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from simulations.assignment import match_points, solve_assignment
from simulations.otmetrics import wasserstein, wasserstein_batch


def _assert_certified(cost, perm, u, v):
    """LP optimality: a permutation, feasible duals, complementary slackness (to rounding)."""
    n = cost.shape[0]
    assert np.array_equal(np.sort(perm), np.arange(n))
    reduced = cost - u[:, None] - v[None, :]
    tol = 1e-9 * max(1.0, np.abs(cost).max())
    assert reduced.min() >= -tol
    assert np.abs(reduced[np.arange(n), perm]).max() <= tol


@settings(deadline=None)
@given(
    n=st.integers(1, 40),
    kind=st.sampled_from(["uniform", "integers", "constant", "scaled"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_optimal_cost_equals_scipy_and_is_certified(n, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        cost = rng.random((n, n))
    elif kind == "integers":  # many ties: several optimal permutations
        cost = rng.integers(0, 3, (n, n)).astype(float)
    elif kind == "constant":
        cost = np.full((n, n), 2.5)
    else:
        cost = rng.standard_normal((n, n)) * 1e6
    perm, u, v = solve_assignment(cost)
    rows, cols = linear_sum_assignment(cost)
    best = cost[rows, cols].sum()
    assert cost[np.arange(n), perm].sum() == pytest.approx(best, rel=1e-12, abs=1e-9)
    _assert_certified(cost, perm, u, v)


@pytest.mark.parametrize("n", [255, 256, 257, 600])
@pytest.mark.parametrize("kind", ["uniform", "ties", "moons"])
def test_sizes_across_column_index_widths(n, kind):
    # the auction's integer keys give the column index b bits and the costs 2**(28 - b) levels;
    # 256 -> 257 is where b changes
    rng = np.random.default_rng(n)
    if kind == "uniform":
        cost = rng.random((n, n))
    elif kind == "ties":
        cost = rng.integers(0, 4, (n, n)).astype(float)
    else:
        from simulations.data import sample_moons

        cost = ot.dist(rng.standard_normal((n, 2)), sample_moons(n, rng))
    perm, u, v = solve_assignment(cost)
    rows, cols = linear_sum_assignment(cost)
    assert cost[np.arange(n), perm].sum() == pytest.approx(cost[rows, cols].sum(), rel=1e-12)
    _assert_certified(cost, perm, u, v)


def test_auction_prices_stay_within_the_integer_key_range():
    # the auction's int32 keys hold (cost + price) << b | column; its prices must stay below
    # 6x the quantised cost range, or it stops early (still exact, but slower): check it never
    # has to on the problems the simulators solve, nor on adversarial ones
    from simulations.assignment_kernels import warm_duals
    from simulations.data import sample_moons

    rng = np.random.default_rng(4)
    problems = [
        ot.dist(rng.standard_normal((256, 2)), sample_moons(256, rng)),
        ot.dist(sample_moons(1000, rng), sample_moons(1000, rng)),
        rng.random((300, 300)),
        np.floor(rng.random((200, 200)) * 2),  # two values: all ties
        np.eye(64) * 1e9,  # one huge entry per row
        np.add.outer(np.arange(100.0), np.arange(100.0)) ** 3,
    ]
    for cost in problems:
        v, completed = warm_duals(cost, 1.0 / 16, 4)
        assert completed, cost.shape


@pytest.mark.parametrize("kind", ["uniform", "ties"])
def test_warm_start_changes_the_speed_not_the_optimum(kind):
    # without the auction every row starts from zero duals: the exact stage alone must still
    # reach the optimum and certify it
    rng = np.random.default_rng(11)
    costs = rng.random((3, 90, 90))
    if kind == "ties":
        costs = np.floor(costs * 3)
    warm = solve_assignment(costs)
    cold = solve_assignment(costs, warm_start=False)
    for r in range(3):
        for perm, u, v in (
            (warm[0][r], warm[1][r], warm[2][r]),
            (cold[0][r], cold[1][r], cold[2][r]),
        ):
            _assert_certified(costs[r], perm, u, v)
        best = costs[r][linear_sum_assignment(costs[r])].sum()
        assert costs[r][np.arange(90), cold[0][r]].sum() == pytest.approx(best, rel=1e-12)
        assert costs[r][np.arange(90), warm[0][r]].sum() == pytest.approx(best, rel=1e-12)


def test_batched_problems_are_independent_and_match_single_calls():
    rng = np.random.default_rng(0)
    costs = rng.random((6, 30, 30))
    perm, u, v = solve_assignment(costs)
    for r in range(6):
        p1, u1, v1 = solve_assignment(costs[r])
        assert np.array_equal(perm[r], p1)
        _assert_certified(costs[r], perm[r], u[r], v[r])


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
def test_point_matching_is_the_exact_ot_plan_of_pot(metric):
    # two moons against Gaussian noise, the OT-CFM minibatch problem, and a near-identical pair
    from simulations.data import sample_moons

    rng = np.random.default_rng(3)
    n = 200
    x = np.stack([rng.standard_normal((n, 2)), sample_moons(n, rng)])
    y = np.stack([sample_moons(n, rng), sample_moons(n, rng) + 1e-3 * rng.standard_normal((n, 2))])
    perm, total = match_points(x, y, metric)
    for r in range(2):
        cost = ot.dist(x[r], y[r], metric=metric)
        plan = ot.emd(ot.unif(n), ot.unif(n), cost)
        assert total[r] / n == pytest.approx(np.sum(plan * cost), rel=1e-12)
        # continuous data: the optimum is unique, so the plans are the same permutation
        assert np.array_equal(np.argmax(plan, axis=1), perm[r])


def test_wasserstein_distances_agree_with_pot_emd2():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((3, 150, 2)), rng.standard_normal((3, 150, 2)) * 1.5 + 0.3
    for p, metric in ((1, "euclidean"), (2, "sqeuclidean")):
        got = wasserstein_batch(x, y, p)
        ref = np.array(
            [
                ot.emd2(ot.unif(150), ot.unif(150), ot.dist(a, b, metric=metric))
                for a, b in zip(x, y)
            ]
        )
        ref = ref if p == 1 else np.sqrt(ref)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
        assert wasserstein(x[0], y[0], p) == pytest.approx(ref[0], rel=1e-12)
    # unequal sizes take POT's network simplex
    assert wasserstein(x[0], y[0, :100], 2) == pytest.approx(
        np.sqrt(ot.emd2(ot.unif(150), ot.unif(100), ot.dist(x[0], y[0, :100]))), rel=1e-12
    )


def test_sliced_w2_equals_pot_for_the_same_seed():
    from simulations.otmetrics import sliced_w2, sliced_w2_batch

    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((4, 300, 2)), rng.standard_normal((4, 300, 2)) * 2 + 1
    seeds = [3, 4, 5, 6]
    pot = [
        ot.sliced_wasserstein_distance(a, b, n_projections=50, p=2, seed=s)
        for a, b, s in zip(x, y, seeds)
    ]
    assert np.allclose(sliced_w2_batch(x, y, 50, seeds), pot, rtol=1e-12)
    # unequal sizes go to POT; a different seed gives other directions
    assert sliced_w2(x[0], y[0][:200], 50, 3) == pytest.approx(
        ot.sliced_wasserstein_distance(x[0], y[0][:200], n_projections=50, p=2, seed=3), rel=1e-12
    )
    assert sliced_w2(x[0], y[0], 50, 7) != pytest.approx(pot[0], rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        sliced_w2_batch(x, y[:, :10], 50, seeds)


def test_exact_ot_pairs_draw_the_same_cells_as_the_network_simplex_plan():
    # the sampler formerly drew from POT's plan; on continuous data the draws are identical
    from simulations.models2d import _draw_cells, exact_ot_pairs

    rng = np.random.default_rng(7)
    for b in (100, 256):
        x0, x1 = rng.standard_normal((2, b, 2)), rng.standard_normal((2, b, 2)) + 1
        u = rng.random((2, b))
        got = exact_ot_pairs(x0, x1, u)
        for r in range(2):
            plan = ot.emd(ot.unif(b), ot.unif(b), ot.dist(x0[r], x1[r]))
            rows, cols = np.nonzero(plan)
            assert np.array_equal(got[r], _draw_cells(rows, cols, plan[rows, cols], u[r]))


def test_high_dimensional_points_use_blas_costs_and_stay_exact():
    from simulations.models2d import exact_ot_pairs

    rng = np.random.default_rng(2)
    x0, x1 = rng.standard_normal((40, 64)), rng.standard_normal((40, 64))
    i, j = exact_ot_pairs(x0, x1, (np.arange(40) + 0.5) / 40)
    cost = ot.dist(x0, x1)
    rows, cols = linear_sum_assignment(cost)
    assert np.array_equal(i, np.arange(40))
    assert np.array_equal(j, cols)


@pytest.mark.parametrize(
    "cost, message",
    [
        (np.zeros((3, 4)), "square cost matrices"),
        (np.zeros((0, 0)), "square cost matrices"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN or infinite"),
    ],
)
def test_bad_cost_matrices_are_refused(cost, message):
    with pytest.raises(ValueError, match=message):
        solve_assignment(cost)


def test_bad_point_clouds_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        match_points(np.zeros((2, 5, 2)), np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="unknown metric"):
        match_points(np.zeros((5, 2)), np.zeros((5, 2)), "cosine")
    with pytest.raises(ValueError, match="NaN or infinite"):
        match_points(np.full((5, 2), np.inf), np.zeros((5, 2)))
