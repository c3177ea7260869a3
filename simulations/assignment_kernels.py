"""Compiled kernels of the exact assignment solver (see simulations.assignment for the method).

Module-level numba functions, so that numba's on-disk cache serves them to later processes;
imported only when a solve is asked for (importing numba takes a few tenths of a second). They
stay in one file: numba's cache does not notice changes to functions in other files.

Every inner loop here is written so that LLVM vectorises it: numba does not vectorise float
minima (NaN semantics), so minima are taken over integer keys instead. Two encodings:
- the auction's keys are int32, (quantised cost + price) << b | column, on an integer cost
  scale small enough that no key overflows (see ``warm_duals``);
- float64 values of any sign map to int64 keys with the same order by flipping the low 63 bits
  of the negative ones (``_okey``, an involution), which gives exact float minima.

Each problem ends with its optimality certificate (``certify``). For a permutation perm and
duals (u, v), the residuals r_ij = C_ij - u_i - v_j decompose every plan's cost:
sum_i C_{i s(i)} = sum u + sum v + sum_i r_{i s(i)}. So if r_ij >= -tol_ij everywhere and
r_ij <= tol_ij on the matched pairs,

    sum_i C_{i perm(i)} - sum_i C_{i s(i)} <= sum over the rows where s differs from perm
    of (tol_{i perm(i)} + tol_{i s(i)})                                  for every permutation s

(linear-programming duality for the assignment problem; Burkard, Dell'Amico and Martello,
"Assignment Problems", 2009, Sec. 4.1). The tolerance is relative to each cost's own magnitude
and to the typical cost S (at most the median |C_ij|, ``typical_scale``):

    tol_ij = KAPPA |C_ij| + KAPPA_S S,    KAPPA = 2**-50 (9e-16),  KAPPA_S = 2**-42 (2.3e-13),

so a big-M entry or a few far outliers loosen only their own entries' tolerance, never that of
the ordinary costs: a plan that passes is optimal to 9e-16 of each cost it exchanges plus
2.3e-13 S per exchanged row. KAPPA covers one rounding of C_ij; KAPPA_S covers the float64
duals of the exact stage, whose rounding is about u = 2**-53 times their magnitude (a few S on
ordinary problems). The residuals are checked in float64 with the bound of every rounding
carried along, and the entries that bound cannot settle are computed exactly (error-free
transformations), so no wrong plan and no garbage duals can pass.

Each problem reports which path certified it: WARM (auction warm start, then the exact stage),
COLD (the exact stage from zero duals) or UNCERTIFIED (neither: the caller hands the problem
to scipy).
"""

import math

import numpy as np
from numba import njit, prange

_IMAX32 = np.int32(2147483647)
_IMAX64 = np.int64(9223372036854775807)
_LOW63 = np.int64(9223372036854775807)
_MAX_INDEX_BITS = 20  # n <= 2**20 leaves the auction at least 2**8 cost levels
_U = 2.0**-53  # unit roundoff of float64
_HUGE = 2.0**500  # costs beyond this (or below 1 / _HUGE) are rescaled by a power of two first
_HUGE_POINT = 2.0**250  # the same for point coordinates: squared distances stay below 2**500 d
_DUAL_LIMIT = 2.0**1000  # certified duals are below this: C - u - v cannot overflow
_SAMPLE = 255  # costs sampled to guess a lower bound of the median |C|

KAPPA = 2.0**-50  # the certificate's tolerance relative to each cost (module docstring)
KAPPA_S = 2.0**-42  # and relative to the typical cost S
# The warm start's duals are prices on costs quantised over [min C, max C], so their rounding
# can reach u (max C - min C) and more, while the certificate allows KAPPA_S S = 2048 u S.
# Measured (N(0, I) clouds, n = 256, 3 outliers at distance 3..3000): warm plans certified in
# every case up to a range of 3000 S, and failed in half the cases from 1.4e4 S on. Past this
# many S (big-M entries, far outliers) the exact stage starts from zero duals instead.
WARM_RANGE = 2.0**12

WARM = 0  # certified after the auction's warm start
COLD = 1  # certified after the exact stage from zero duals
UNCERTIFIED = 2  # neither certified: the caller solves it with scipy


@njit(cache=True, nogil=True)
def _okey(x):
    # float64 bits (as int64) -> int64 with the floats' order; applied twice gives x back
    return x ^ ((x >> 63) & _LOW63)


@njit(cache=True, nogil=True)
def _float_min(values, n):
    bits = values.view(np.int64)
    m = _IMAX64
    for j in range(n):
        m = min(m, _okey(bits[j]))
    out = np.empty(1, np.int64)
    out[0] = _okey(m)
    return out.view(np.float64)[0]


@njit(cache=True, nogil=True)
def _scan(cost, probe):
    # min and max of the costs, and how many |C_ij| are below probe, in one pass
    n = cost.shape[0]
    flat = cost.reshape(n * n)
    bits = flat.view(np.int64)
    lo = _IMAX64
    hi = -_IMAX64
    below = 0
    for k in range(n * n):
        key = _okey(bits[k])
        lo = min(lo, key)
        hi = max(hi, key)
        below += abs(flat[k]) < probe
    out = np.empty(2, np.int64)
    out[0] = _okey(lo)
    out[1] = _okey(hi)
    f = out.view(np.float64)
    return f[0], f[1], below


@njit(cache=True, nogil=True)
def _select(a, k):
    # the k-th smallest of a (reordered in place): quickselect, median-of-three pivots
    lo = 0
    hi = a.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while pivot < a[j]:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@njit(cache=True, nogil=True)
def typical_scale(cost):
    """Cost range and a proven lower bound S of the median of |C_ij|, in one pass.

    Parameters
    ----------
    cost : ndarray, shape (n, n), C-contiguous, finite

    Returns
    -------
    lo, hi : float
        min and max of the costs.
    scale : float
        S <= median |C_ij|: the 3/8 quantile of 255 costs sampled on a fixed pattern, kept if
        fewer than half of all costs are below it (counted in the same pass), else the lower
        middle order statistic of all |C_ij|. Robust: one big-M entry or a few outlier rows
        do not move it.
    """
    n = cost.shape[0]
    m = min(n * n, _SAMPLE)
    sample = np.empty(m)
    for k in range(m):
        i = (k * n) // m
        j = (k * 7919 + 13) % n  # a prime stride, so the pattern does not follow a diagonal
        sample[k] = abs(cost[i, j])
    probe = _select(sample, (3 * m) // 8)
    lo, hi, below = _scan(cost, probe)
    # below <= n^2 / 2 - 1 puts both middle order statistics at or above probe
    if 2 * below + 2 <= n * n:
        return lo, hi, probe
    return lo, hi, _select(np.abs(cost).reshape(n * n), (n * n - 1) // 2)


@njit(cache=True, nogil=True)
def _best(row, prices, n):
    m = _IMAX32
    for j in range(n):
        m = min(m, np.int32(row[j] + prices[j]))
    return m


@njit(cache=True, nogil=True)
def _second(row, prices, n, best):
    # keys are distinct (the column is in the low bits), so only the best is left out
    m = _IMAX32
    for j in range(n):
        k = np.int32(row[j] + prices[j])
        m = min(m, _IMAX32 if k == best else k)
    return m


@njit(cache=True, nogil=True)
def auction(keys, prices, eps, theta, b, limit):
    """Gauss-Seidel forward auction with epsilon-scaling on integer costs (Bertsekas).

    An unassigned row bids for its cheapest column (value cost + price), raising that price to
    second-best value - cost + eps: every phase ends with every row eps-happy, then eps is
    divided by theta down to 1. Prices stay below about 4x the cost range (shifted to min 0 at
    each phase start); ``limit`` stops the auction otherwise: its prices are a warm start only.

    Parameters
    ----------
    keys : int32 array (n, n)
        cost_ij << b | j: a value is one int32 add, the column rides in the low b bits.
    prices : int32 array (n,)
        Column prices, shifted left by b; updated in place.
    eps, theta, b, limit : int
        Starting epsilon (cost units), scaling factor, index bits, largest price (shifted).

    Returns
    -------
    bool
        Whether every phase ran to its end.
    """
    n = keys.shape[0]
    owner = np.empty(n, np.int64)
    queue = np.empty(n, np.int64)
    low = np.int32((1 << b) - 1)
    high = np.int32(~low)
    while True:
        floor = prices.min()
        for j in range(n):
            prices[j] -= floor
        owner[:] = -1
        for k in range(n):
            queue[k] = k
        head = 0
        tail = n
        waiting = n
        step = np.int32(eps << b)
        while waiting > 0:
            i = queue[head % n]
            head += 1
            waiting -= 1
            row = keys[i]
            best = _best(row, prices, n)
            j = best & low
            second = _second(row, prices, n, best)
            price = (second & high) - (row[j] & high) + step
            if price > limit:
                return False
            prices[j] = price
            previous = owner[j]
            owner[j] = i
            if previous >= 0:
                queue[tail % n] = previous
                tail += 1
                waiting += 1
        if eps <= 1:
            return True
        eps = max(eps // theta, 1)


@njit(cache=True, nogil=True)
def _relax(crow, ui, v, dist, shortest, path, i, n):
    # Dijkstra's relaxation from row i; finished columns hold NaN, which never compares smaller
    base = dist - ui
    for j in range(n):
        r = base + crow[j] - v[j]
        s = shortest[j]
        better = r < s
        shortest[j] = r if better else s
        path[j] = i if better else path[j]


@njit(cache=True, nogil=True)
def _first_equal(shortest, row4col, lowest, n, free_only):
    m = n
    for j in range(n):
        hit = shortest[j] == lowest
        if free_only:
            hit = hit and row4col[j] == -1
        m = min(m, j if hit else n)
    return m


# Kept whole (95 lines): its two stages share ten work arrays, which split helpers would all take.
@njit(cache=True, nogil=True)
def augment(cost, v):
    """Exact stage: the optimal assignment by shortest augmenting paths from column duals v.

    Feasible row duals u_i = min_j (cost_ij - v_j); each row takes its cheapest column when
    that is still free (a tight edge: no dual change), and the rest get shortest augmenting
    paths (Dijkstra on reduced costs, Jonker-Volgenant), which keep the duals feasible and the
    matched edges tight.

    Parameters
    ----------
    cost : ndarray of float64, shape (n, n)
        Finite assignment costs C_ij.
    v : ndarray of float64, shape (n,)
        Column duals (a warm start, or zeros); updated in place.

    Returns
    -------
    col4row : ndarray of int64, shape (n,)
        The column assigned to each row.
    u : ndarray of float64, shape (n,)
        Row duals.
    ok : bool
        False if a path met no finite distance (only possible on non-finite input, which the
        callers exclude; checked so that no index can leave the arrays).
    """
    n = cost.shape[0]
    u = np.empty(n)
    col4row = np.full(n, -1, np.int64)
    row4col = np.full(n, -1, np.int64)
    reduced = np.empty(n)
    pending = np.empty(n, np.int64)
    npending = 0
    for i in range(n):
        for j in range(n):
            reduced[j] = cost[i, j] - v[j]
        ui = _float_min(reduced, n)
        u[i] = ui
        for j in range(n):
            if reduced[j] == ui and row4col[j] == -1:
                col4row[i] = j
                row4col[j] = i
                break
        if col4row[i] == -1:
            pending[npending] = i
            npending += 1
    shortest = np.empty(n)
    final = np.empty(n)
    path = np.empty(n, np.int64)
    rows_seen = np.empty(n, np.int64)
    cols_seen = np.empty(n, np.int64)
    for q in range(npending):
        cur = pending[q]
        shortest[:] = np.inf
        dist = 0.0
        i = cur
        sink = -1
        nrows = 0
        ncols = 0
        while sink == -1:
            rows_seen[nrows] = i
            nrows += 1
            _relax(cost[i], u[i], v, dist, shortest, path, i, n)
            lowest = _float_min(shortest, n)
            if not lowest < np.inf:
                return col4row, u, False
            # prefer a free column on ties: the path ends sooner
            j = _first_equal(shortest, row4col, lowest, n, True)
            if j == n:
                j = _first_equal(shortest, row4col, lowest, n, False)
            dist = lowest
            final[j] = lowest
            shortest[j] = np.nan
            cols_seen[ncols] = j
            ncols += 1
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
        u[cur] += dist
        for t in range(1, nrows):
            i = rows_seen[t]
            u[i] += dist - final[col4row[i]]
        for t in range(ncols):
            j = cols_seen[t]
            v[j] -= dist - final[j]
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            previous = col4row[i]
            col4row[i] = j
            j = previous
            if i == cur:
                break
    return col4row, u, True


@njit(cache=True, nogil=True)
def warm_duals(cost, eps_start_rel, theta):
    """Column duals v = -prices of the auction on the costs quantised to integers.

    Parameters
    ----------
    cost : ndarray of float64, shape (n, n)
        Finite assignment costs.
    eps_start_rel : float
        Starting epsilon of the auction, relative to the cost range.
    theta : int
        Epsilon-scaling factor between phases.

    Returns
    -------
    v : ndarray of float64, shape (n,)
        Column duals, a warm start for ``augment``.
    completed : bool
        Whether the auction ran every phase to its end.
    """
    lo, hi, _ = _scan(cost, 0.0)
    return _warm_duals(cost, lo, hi, eps_start_rel, theta)


@njit(cache=True, nogil=True)
def _warm_duals(cost, lo, hi, eps_start_rel, theta):
    n = cost.shape[0]
    spread = hi - lo
    v = np.zeros(n)
    b = 1
    while (1 << b) < n:
        b += 1
    if spread == 0 or n == 1 or b > _MAX_INDEX_BITS:
        return v, True
    # integer costs in [0, 2**(28 - b)]: keys below 2**31 for prices up to 6x that range
    levels = 1 << (28 - b)
    scale = levels / spread
    keys = np.empty((n, n), np.int32)
    for i in range(n):
        for j in range(n):
            keys[i, j] = (np.int32((cost[i, j] - lo) * scale + 0.5) << b) | j
    prices = np.zeros(n, np.int32)
    eps = max(int(levels * eps_start_rel), 1)
    completed = auction(keys, prices, eps, theta, b, np.int32(6 * levels) << b)
    for j in range(n):
        v[j] = -(prices[j] >> b) / scale
    return v, completed


@njit(cache=True, nogil=True)
def _residual(c, ui, vj):
    # c - ui - vj with an error bound, from two error-free subtractions (Knuth's TwoSum):
    # c - ui = s1 + e1 and s1 - vj = s2 + e2 exactly, so the residual is s2 + e1 + e2
    s1 = c - ui
    bp = s1 - c
    e1 = (c - (s1 - bp)) + (-ui - bp)
    s2 = s1 - vj
    bp = s2 - s1
    e2 = (s1 - (s2 - bp)) + (-vj - bp)
    tail = e1 + e2
    r = s2 + tail
    return r, 1.01 * _U * (abs(tail) + abs(r))


@njit(cache=True, nogil=True)
def _row_exact(row, ui, v, bound, sigma, n):
    # the entries of one row that the float test could not settle, settled exactly
    for j in range(n):
        c = row[j]
        if c - v[j] < bound:
            r, err = _residual(c, ui, v[j])
            if not r - err >= -(0.999 * KAPPA * abs(c) + sigma):
                return False
    return True


@njit(cache=True, nogil=True)
def certify(cost, perm, u, v, scale):
    """Whether (perm, u, v) proves perm an optimal assignment of ``cost``, to the tolerance.

    Checks that perm is a permutation, the duals are finite, and the exact residuals
    r_ij = C_ij - u_i - v_j satisfy r_ij >= -tol_ij for every (i, j) and r_ij <= tol_ij on the
    matched pairs, tol_ij = KAPPA |C_ij| + KAPPA_S S (what a pass proves: the module docstring).

    Most entries are settled by one float comparison, fl(C_ij - v_j) >= b_i with
    b_i = fl(u_i - (0.999 sigma - 2.01 u |u_i|)), sigma = KAPPA_S S, u the unit roundoff: the
    subtraction is within u |fl(C_ij - v_j)| of exact and b_i within u |b_i| of its value, so
    passing proves r_ij >= -sigma (the worst case is fl(C_ij - v_j) = b_i; the factors 0.999
    and 2.01 absorb the second-order terms). The entries that fail it (the matched ones when
    sigma is below the duals' rounding, and any near-tight or negative residual) and every
    matched pair get their residual from two error-free subtractions (``_residual``).

    Parameters
    ----------
    cost : ndarray, shape (n, n)
        The costs C, finite, at most 2**500 in magnitude.
    perm : ndarray of int64, shape (n,)
        perm[i] is the column of row i.
    u, v : ndarray, shape (n,)
        Row and column duals.
    scale : float
        S >= 0, at most the median |C_ij| (``typical_scale``).

    Returns
    -------
    bool
    """
    n = cost.shape[0]
    seen = np.zeros(n, np.bool_)
    for i in range(n):
        j = perm[i]
        if j < 0 or j >= n or seen[j]:
            return False
        seen[j] = True
        if not (abs(u[i]) < _DUAL_LIMIT and abs(v[i]) < _DUAL_LIMIT):  # NaN fails too
            return False
    sigma = 0.999 * KAPPA_S * scale
    for i in range(n):
        ui = u[i]
        bound = ui - (0.999 * sigma - 2.01 * _U * abs(ui))
        row = cost[i]
        unsettled = 0
        for j in range(n):
            unsettled += row[j] - v[j] < bound
        if unsettled > 0 and not _row_exact(row, ui, v, bound, sigma, n):
            return False
        c = row[perm[i]]
        r, err = _residual(c, ui, v[perm[i]])
        if not r + err <= 0.999 * KAPPA * abs(c) + sigma:
            return False
    return True


@njit(cache=True, nogil=True)
def _times_pow2(a, e):
    # a * 2**e, exact unless a result underflows; two factors, so that 2**e never overflows
    h = e // 2
    return (a * 2.0**h) * 2.0 ** (e - h)


@njit(cache=True, nogil=True)
def _exact_stage(cost, v, scale):
    col4row, u, ok = augment(cost, v)
    return col4row, u, ok and certify(cost, col4row, u, v, scale)


@njit(cache=True, nogil=True)
def solve(cost, warm, eps_start_rel, theta):
    """One assignment problem: the certified plan, its duals, and which path certified it.

    Costs beyond 2**500 in magnitude (or all below 2**-500) are first multiplied by a power of
    two (exact unless an entry underflows, which is checked): the plan is the same and nothing
    in the solver can overflow. Then the warm path (auction, exact stage, certificate) if the
    cost range is within WARM_RANGE typical costs; if it was skipped or its certificate failed,
    the exact stage from zero duals and the certificate again.

    Parameters
    ----------
    cost : ndarray, shape (n, n), C-contiguous, finite
    warm : bool
        Try the auction's warm start first.
    eps_start_rel, theta : float, int
        The auction's first epsilon (relative to the cost range) and scaling factor.

    Returns
    -------
    col4row : ndarray of int64, shape (n,)
    u, v : ndarray, shape (n,)
        Duals for ``cost`` itself (scaled back; UNCERTIFIED if they overflow).
    status : int
        WARM, COLD or UNCERTIFIED.
    """
    n = cost.shape[0]
    lo, hi, scale = typical_scale(cost)
    top = max(abs(lo), abs(hi))
    e = 0
    exact = True
    c = cost
    if top > _HUGE or (top > 0.0 and top < 1.0 / _HUGE):
        e = math.frexp(top)[1]
        c = _times_pow2(cost, -e)
        exact = np.array_equal(_times_pow2(c, e), cost)
        lo, hi, scale = _times_pow2(lo, -e), _times_pow2(hi, -e), _times_pow2(scale, -e)
    # one call site for the exact stage: numba compiles it (and the certificate) once
    status = UNCERTIFIED
    first = WARM if warm and hi - lo <= WARM_RANGE * scale else COLD
    for path in range(first, COLD + 1):
        v = _warm_duals(c, lo, hi, eps_start_rel, theta)[0] if path == WARM else np.zeros(n)
        col4row, u, ok = _exact_stage(c, v, scale)
        if ok:
            status = path
            break
    if not exact:
        status = UNCERTIFIED
    if e != 0:
        u = _times_pow2(u, e)
        v = _times_pow2(v, e)
        if not (np.isfinite(u).all() and np.isfinite(v).all()):
            status = UNCERTIFIED  # the plan's duals are beyond float64 (costs near 1e308)
    return col4row, u, v, status


@njit(cache=True, nogil=True)
def pair_cost(x, y, squared):
    """Pairwise costs |x_i - y_j|^2 (or |x_i - y_j|): shape (n, n) from x, y of shape (n, d)."""
    n, d = x.shape
    cost = np.zeros((n, n))
    yt = y.T.copy()
    for i in range(n):
        for k in range(d):
            xik = x[i, k]
            for j in range(n):
                t = xik - yt[k, j]
                cost[i, j] += t * t
        if not squared:
            for j in range(n):
                cost[i, j] = np.sqrt(cost[i, j])
    return cost


@njit(cache=True, nogil=True)
def point_costs(x, y, squared):
    """Costs between point clouds x, y of shape (n, d), rescaled if they could overflow.

    Coordinates beyond 2**250 in magnitude (or all below 2**-250) are multiplied by 2**-e
    first, so that squared distances neither overflow nor underflow; the plan is the same.

    Returns
    -------
    cost : ndarray, shape (n, n)
        The costs of the rescaled points.
    factor_exp : int
        The costs of the original points are cost * 2**factor_exp (2e for squared distances,
        e for distances).
    """
    top = max(np.abs(x).max(), np.abs(y).max()) if x.size > 0 else 0.0
    if top > _HUGE_POINT or (top > 0.0 and top < 1.0 / _HUGE_POINT):
        e = math.frexp(top)[1]
        return pair_cost(_times_pow2(x, -e), _times_pow2(y, -e), squared), (2 * e if squared else e)
    return pair_cost(x, y, squared), 0


@njit(cache=True, nogil=True)
def plan_total(cost, perm, factor_exp):
    """sum_i cost[i, perm[i]] * 2**factor_exp (+inf if the total exceeds the float64 range)."""
    acc = 0.0
    for i in range(cost.shape[0]):
        acc += cost[i, perm[i]]
    return _times_pow2(acc, factor_exp) if factor_exp != 0 else acc


@njit(cache=True, parallel=True)
def solve_costs(costs, warm, eps_start_rel, theta):
    """``solve`` for each of R problems, in parallel: costs (R, n, n) -> (R, n) x 3 and (R,)."""
    r, n, _ = costs.shape
    perm = np.empty((r, n), np.int64)
    us = np.empty((r, n))
    vs = np.empty((r, n))
    status = np.empty(r, np.int64)
    for b in prange(r):
        perm[b], us[b], vs[b], status[b] = solve(costs[b], warm, eps_start_rel, theta)
    return perm, us, vs, status


@njit(cache=True, parallel=True)
def solve_points(x, y, squared, eps_start_rel, theta):
    """Point matching for each of R problems: x, y (R, n, d) -> perm (R, n), total, status (R,)."""
    r, n, _ = x.shape
    perm = np.empty((r, n), np.int64)
    total = np.empty(r)
    status = np.empty(r, np.int64)
    for b in prange(r):
        cost, factor_exp = point_costs(x[b], y[b], squared)
        s, _, _, status[b] = solve(cost, True, eps_start_rel, theta)
        perm[b] = s
        total[b] = plan_total(cost, s, factor_exp)
    return perm, total, status
