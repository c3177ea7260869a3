"""The exact assignment solver (simulations.assignment) against scipy, POT and exact arithmetic.

Its certificates are checked here independently of the kernel: residuals C_ij - u_i - v_j in
exact integer arithmetic (every float64 is an integer times a power of two), against the
documented tolerance 2**-50 |C_ij| + 2**-42 S with S the median |C_ij|.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from simulations.assignment import assign, match_points, solve_assignment
from simulations.otmetrics import wasserstein, wasserstein_batch
from stability.errors import UsageError

U = 2.0**-53


def _exact_ints(*arrays):
    """The arrays as Python integers (object arrays) in units of one common power of two."""
    parts = [np.frexp(np.asarray(a, dtype=np.float64)) for a in arrays]
    low = min(int((e - 53).min()) for _, e in parts)
    out = []
    for m, e in parts:
        mant = (m * 2.0**53).astype(np.int64).astype(object)
        out.append(mant * (2 ** (e - 53 - low).astype(object)))
    return out


def _lower_median(cost):
    """The lower middle order statistic of |C| (the median if the count is odd): <= median."""
    flat = np.sort(np.abs(cost).ravel())
    return flat[(flat.size - 1) // 2]


def _assert_certified(cost, perm, u, v):
    """LP optimality in exact arithmetic: a permutation, finite duals, and every residual
    r_ij = C_ij - u_i - v_j >= -(2**-50 |C_ij| + 2**-42 S), with r_ij <= that tolerance on the
    matched pairs (S the median |C|): the certificate of assignment_kernels.certify."""
    n = cost.shape[0]
    assert np.array_equal(np.sort(perm), np.arange(n))
    assert np.isfinite(u).all() and np.isfinite(v).all()
    c, uu, vv, s = _exact_ints(cost, u, v, _lower_median(cost))
    # scaled by 2**50: 2**50 r_ij + |C_ij| + 2**8 S >= 0
    scaled_r = (c - uu[:, None] - vv[None, :]) * 2**50
    slack = np.abs(c) + s * 2**8
    assert (scaled_r + slack >= 0).all()
    rows = np.arange(n)
    assert (scaled_r[rows, perm] <= slack[rows, perm]).all()


def _plan_cost(cost, perm):
    """sum_i C[i, perm[i]], correctly rounded (math.fsum)."""
    return math.fsum(cost[np.arange(len(perm)), perm])


def _assert_same_optimum(cost, perm):
    """Our plan's cost equals scipy's optimum to the float64 summation tolerance.

    Two optimal plans have equal exact sums; a solver that adds its plan's n costs in float64
    is within gamma_n sum |C| of that sum (Higham, recursive summation), so two solvers' optima
    may differ by gamma_n (|ours| + |scipy's|) and no more. Costs whose sums could overflow are
    compared after an exact power-of-two rescaling."""
    n = cost.shape[0]
    top = np.abs(cost).max()
    if top > 2.0**500 or 0 < top < 2.0**-500:
        cost = np.ldexp(cost, -np.frexp(top)[1])
    rows, cols = linear_sum_assignment(cost)
    ours, best = _plan_cost(cost, perm), _plan_cost(cost, cols[np.argsort(rows)])
    gamma = n * U / (1 - n * U)
    size = math.fsum(np.abs(cost[np.arange(n), perm])) + math.fsum(np.abs(cost[rows, cols]))
    assert abs(ours - best) <= gamma * size, (ours, best)


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
    _assert_same_optimum(cost, perm)
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
    from simulations.models2d import exact_ot_pairs
    from stability.coupling import inverse_cdf_pick

    rng = np.random.default_rng(7)
    for b in (100, 256):
        x0, x1 = rng.standard_normal((2, b, 2)), rng.standard_normal((2, b, 2)) + 1
        u = rng.random((2, b))
        got = exact_ot_pairs(x0, x1, u)
        for r in range(2):
            plan = ot.emd(ot.unif(b), ot.unif(b), ot.dist(x0[r], x1[r]))
            rows, cols = np.nonzero(plan)
            pick = inverse_cdf_pick(plan[rows, cols], u[r])  # cells drawn by inverse CDF
            assert np.array_equal(got[r], np.stack([rows[pick], cols[pick]]))


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
        (
            np.array([[0.0, 1.0], [np.inf, 2.0]]),
            r"NaN or infinite entries \(1, the first at \(1, 0\)\)",
        ),
        (np.full((2, 3, 3), -np.inf), r"\(18, the first at \(0, 0, 0\)\)"),
    ],
)
def test_bad_cost_matrices_are_refused(cost, message):
    with pytest.raises(UsageError, match=message) as refused:
        solve_assignment(cost)
    assert "\n" not in str(refused.value)


def test_bad_point_clouds_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        match_points(np.zeros((2, 5, 2)), np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="unknown metric"):
        match_points(np.zeros((5, 2)), np.zeros((5, 2)), "cosine")
    with pytest.raises(ValueError, match="NaN or infinite"):
        match_points(np.full((5, 2), np.inf), np.zeros((5, 2)))


# --- the edges: inputs that float64 duals cannot resolve (issue 17, item 6) -------------------


def _sqdist(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("big", [1e18, 1e20])
def test_a_big_m_entry_leaves_the_plan_optimal_and_certified(big):
    # one forbidden pair (the "big-M" way): the auction's quantisation over [0, big] put all
    # ordinary costs on one level and its duals near 1e14, where the costs in [0, 1) are below
    # their rounding; the plan cost up to 1.97x the optimum with a certificate that passed
    rng = np.random.default_rng(2)
    cost = rng.random((200, 200))
    cost[0, 0] = big
    a = assign(cost)
    _assert_same_optimum(cost, a.perm)
    _assert_certified(cost, a.perm, a.u, a.v)
    assert a.solved_by == "augmenting paths"  # detected: no auction


def test_a_few_far_outliers_leave_the_plan_of_the_ordinary_points_optimal():
    # 197 points at scale 1e-3 and 3 outlier pairs near 1e8: the ordinary points' squared
    # distances (1e-6) are 1e-22 of the range; their plan must be the optimum of their own
    # sub-problem (it was 9x to 100x that), which the total cost (dominated by the outliers)
    # cannot show
    rng = np.random.default_rng(0)
    n, k = 200, 3
    x, y = rng.standard_normal((2, n, 2)) * 1e-3
    far = rng.standard_normal((k, 2)) * 1e8
    ix, iy = rng.choice(n, k, replace=False), rng.choice(n, k, replace=False)
    x[ix], y[iy] = far, far + rng.standard_normal((k, 2))
    cost = _sqdist(x, y)
    rows, cols = np.setdiff1d(np.arange(n), ix), np.setdiff1d(np.arange(n), iy)
    for perm in (match_points(x, y)[0], solve_assignment(cost)[0]):
        assert np.array_equal(np.sort(perm[ix]), np.sort(iy))  # outliers to outliers
        sub = cost[np.ix_(rows, cols)]
        local = np.searchsorted(cols, perm[rows])
        _assert_same_optimum(sub, local)
    a = assign(cost)
    _assert_certified(cost, a.perm, a.u, a.v)


_HUGE_POINTS = """
import json
import numpy as np
from simulations.assignment import match_points
rng = np.random.default_rng(1)
x, y = rng.standard_normal((2, 50, 2)) * 1e200
out = {m: [v.tolist() for v in match_points(x, y, m)] for m in ("sqeuclidean", "euclidean")}
print(json.dumps(out))
"""


def test_points_near_1e200_give_the_exact_plan_without_crashing():
    # squared distances near 1e400 overflowed to inf: the kernel read uninitialised memory,
    # crashed or never returned (so this runs in a child process with a time limit)
    done = subprocess.run(
        [sys.executable, "-c", _HUGE_POINTS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 50, 2)) * 1e200
    scaled = _sqdist(x * 2.0**-700, y * 2.0**-700)  # exact: a power of two, no underflow
    perm, total = np.array(out["sqeuclidean"][0]), out["sqeuclidean"][1]
    _assert_same_optimum(scaled, perm)
    assert total == np.inf  # W2^2 * n is near 1e402: beyond float64, reported as such
    perm, total = np.array(out["euclidean"][0]), out["euclidean"][1]
    _assert_same_optimum(np.sqrt(scaled), perm)
    # the kernel adds the 50 costs in float64: within gamma_50 of the correctly rounded sum
    assert total == pytest.approx(_plan_cost(np.sqrt(scaled), perm) * 2.0**700, rel=50 * U)


def test_ordinary_problems_keep_the_fast_path():
    # the detection and the certificate must not send the simulators' problems elsewhere
    from simulations.data import sample_moons

    rng = np.random.default_rng(8)
    for _ in range(4):
        m = sample_moons(256, rng)
        for x, y in (
            (rng.standard_normal((256, 2)), m),
            (m + 0.05 * rng.standard_normal((256, 2)), sample_moons(256, rng)),
            (m, m + 1e-3 * rng.standard_normal((256, 2))),
        ):
            a = assign(_sqdist(x, y))
            assert a.solved_by == "auction + augmenting paths"


@st.composite
def adversarial_costs(draw, max_n=40):
    """(kind, cost of shape (n, n)): matrices built to defeat float64 duals, n in 1..max_n."""
    n = draw(st.integers(1, max_n))
    kind = draw(
        st.sampled_from(["big-M", "mixed scales", "overflow-prone", "tiny", "ties", "negative"])
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cost = rng.random((n, n))
    if kind == "big-M":  # forbidden pairs at 1e15..1e300, up to a fifth of the entries
        big = 10.0 ** draw(st.integers(15, 300))
        cost[rng.random((n, n)) < draw(st.floats(0.0, 0.2))] = big
        cost[rng.integers(n), rng.integers(n)] = big
    elif kind == "mixed scales":  # row and column scales across 24 decades
        a, b = rng.uniform(-12, 12, (2, n))
        cost *= 10.0 ** (a[:, None] + b[None, :])
    elif kind == "overflow-prone":  # both signs near the top of the float64 range
        with np.errstate(over="ignore"):
            top = rng.standard_normal((n, n)) * 10.0 ** draw(st.integers(290, 308))
        cost = np.clip(top, -1.7e308, 1.7e308)
    elif kind == "tiny":  # near and below the smallest normal float64
        cost *= 10.0 ** -draw(st.integers(290, 315))
    elif kind == "ties":  # few distinct values: many optimal plans
        cost = rng.integers(0, draw(st.integers(1, 3)) + 1, (n, n)) * 10.0 ** draw(
            st.integers(-5, 5)
        )
    else:
        cost = rng.standard_normal((n, n)) * 10.0 ** draw(st.integers(-3, 9))
    return kind, np.asarray(cost, dtype=np.float64)


@st.composite
def adversarial_points(draw):
    """(kind, x, y), each of shape (n, d): point clouds built to defeat float64 duals."""
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["duplicated", "outliers", "overflow-prone", "clustered"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d))
    if kind == "duplicated":  # repeated points on both sides: ties everywhere
        pool = rng.standard_normal((max(1, n // 3), d))
        x, y = pool[rng.integers(len(pool), size=n)], pool[rng.integers(len(pool), size=n)]
    elif kind == "outliers":  # a few points 1e4..1e150 away from points at 1e-3
        x, y = x * 1e-3, y * 1e-3
        k = draw(st.integers(1, max(1, n // 5)))
        far = rng.standard_normal((k, d)) * 10.0 ** draw(st.integers(4, 150))
        x[:k] = far
        y[rng.permutation(n)[:k]] = far + rng.standard_normal((k, d)) * draw(
            st.sampled_from([0.0, 1.0])
        )
    elif kind == "overflow-prone":  # squared distances beyond the float64 range
        scale = 10.0 ** draw(st.integers(150, 300))
        x, y = x * scale, y * scale
    else:  # a tight cluster (1e-6) holding half the points, the rest at scale 1
        half = n // 2
        x[:half] *= 1e-6
        y[:half] *= 1e-6
    return kind, x, y


@given(case=adversarial_costs())
def test_adversarial_cost_matrices_have_scipys_optimum(case):
    # never a difference in optimal cost, and every certificate holds in exact arithmetic
    _, cost = case
    a = assign(cost)
    _assert_same_optimum(cost, a.perm)
    if a.solved_by != "scipy":
        _assert_certified(cost, a.perm, a.u, a.v)
    else:
        assert np.isnan(a.u).all() and np.isnan(a.v).all()


@given(case=adversarial_points(), metric=st.sampled_from(["sqeuclidean", "euclidean"]))
def test_adversarial_point_clouds_have_scipys_optimum(case, metric):
    _, x, y = case
    perm, total = match_points(x, y, metric)
    top = max(np.abs(x).max(), np.abs(y).max())
    e = int(np.frexp(top)[1]) if top > 2.0**250 else 0
    cost = _sqdist(np.ldexp(x, -e), np.ldexp(y, -e))  # exact rescaling: the plan is the same
    cost = cost if metric == "sqeuclidean" else np.sqrt(cost)
    _assert_same_optimum(cost, perm)
    with np.errstate(over="ignore"):  # W2^2 near 1e600 is +inf in float64
        expected = np.ldexp(_plan_cost(cost, perm), e * (2 if metric == "sqeuclidean" else 1))
    n = len(x)
    assert total == pytest.approx(expected, rel=n * U, abs=0) or total == expected == np.inf


def _exact_residuals(cost, perm, u, v):
    """(residuals r_ij, tolerances tol_ij) as Fractions: the certificate's terms, exactly."""
    from simulations.assignment_kernels import KAPPA, KAPPA_S, typical_scale

    s = Fraction(typical_scale(cost)[2])
    f = np.vectorize(Fraction, otypes=[object])
    c, uu, vv = f(cost), f(u), f(v)
    r = c - uu[:, None] - vv[None, :]
    tol = np.abs(c) * Fraction(KAPPA) + Fraction(KAPPA_S) * s
    return r, tol


@given(
    case=adversarial_costs(max_n=15),
    change=st.sampled_from(["none", "swap", "dual ulps", "dual relative", "both"]),
    size=st.integers(0, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_certificate_passes_exactly_the_plans_it_can_prove(case, change, size, seed):
    # certify is sound (a pass means every residual is within its tolerance, in exact
    # arithmetic, so no plan saves more than the tolerances of the rows it changes) and not
    # vacuous (a plan whose residuals are within 0.99 of the tolerance passes)
    from simulations.assignment_kernels import certify, typical_scale

    _, cost = case
    n = cost.shape[0]
    if np.abs(cost).max() > 2.0**500:
        cost = np.ldexp(cost, -np.frexp(np.abs(cost).max())[1])  # certify's domain
    a = assign(cost)
    if a.solved_by == "scipy":
        return
    rng = np.random.default_rng(seed)
    perm, u, v = a.perm.copy(), a.u.copy(), a.v.copy()
    if change in ("swap", "both") and n > 1:
        i, j = rng.choice(n, 2, replace=False)
        perm[[i, j]] = perm[[j, i]]
    if change in ("dual ulps", "both"):
        u += rng.integers(-size, size + 1, n) * np.spacing(u)
    if change == "dual relative":
        v *= 1 + rng.standard_normal(n) * 2.0 ** -rng.integers(10, 60)
    passed = certify(cost, perm, u, v, typical_scale(cost)[2])
    r, tol = _exact_residuals(cost, perm, u, v)
    rows = np.arange(n)
    within = (r >= -tol).all() and (r[rows, perm] <= tol[rows, perm]).all()
    comfortably = (r >= -tol * Fraction(99, 100)).all() and (
        r[rows, perm] <= tol[rows, perm] * Fraction(99, 100)
    ).all()
    if passed:
        assert within
        rows_s, cols_s = linear_sum_assignment(cost)
        changed = rows[perm != cols_s[np.argsort(rows_s)]]
        saving = sum(Fraction(cost[i, perm[i]]) for i in changed) - sum(
            Fraction(cost[i, cols_s[np.argsort(rows_s)][i]]) for i in changed
        )
        best = cols_s[np.argsort(rows_s)]
        assert saving <= sum(tol[i, perm[i]] + tol[i, best[i]] for i in changed)
    if comfortably:
        assert passed


def test_the_certificate_threshold_is_the_documented_tolerance():
    # moving one dual by a multiple of the matched pair's tolerance: within it passes, past it
    # fails, in agreement with the exact residuals
    from simulations.assignment_kernels import KAPPA, KAPPA_S, certify, typical_scale

    rng = np.random.default_rng(5)
    cost = rng.random((20, 20))
    a = assign(cost)
    s = typical_scale(cost)[2]
    i = 7
    tol = KAPPA * cost[i, a.perm[i]] + KAPPA_S * s
    for factor, expected in ((0.5, True), (-0.5, True), (1.5, False), (-1.5, False)):
        u = a.u.copy()
        u[i] += factor * tol  # the matched residual moves by -factor tol
        assert certify(cost, a.perm, u, a.v, s) == expected
        r, t = _exact_residuals(cost, a.perm, u, a.v)
        assert ((r >= -t).all() and r[i, a.perm[i]] <= t[i, a.perm[i]]) == expected


def test_a_wrong_plan_with_the_duals_of_the_right_one_fails():
    from simulations.assignment_kernels import certify, typical_scale

    rng = np.random.default_rng(3)
    cost = rng.random((30, 30))
    a = assign(cost)
    s = typical_scale(cost)[2]
    assert certify(cost, a.perm, a.u, a.v, s)
    wrong = a.perm.copy()
    wrong[[0, 1]] = wrong[[1, 0]]
    assert not certify(cost, wrong, a.u, a.v, s)
    assert not certify(cost, np.zeros(30, np.int64), a.u, a.v, s)  # not a permutation
    u = a.u.copy()
    u[4] = np.nan
    assert not certify(cost, a.perm, u, a.v, s)
    # the duals of the big-M failure: the warm start's, near 1e14, on costs in [0, 1)
    from simulations.assignment_kernels import augment, warm_duals

    cost[0, 0] = 1e20
    v = warm_duals(cost, 1.0 / 16, 4)[0]
    perm, u, ok = augment(cost, v)
    assert ok and not certify(cost, perm, u, v, typical_scale(cost)[2])
