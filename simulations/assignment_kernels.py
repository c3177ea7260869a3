"""Compiled kernels of the exact assignment solver (see simulations.assignment for the method).

Module-level numba functions, so that numba's on-disk cache serves them to later processes;
imported only when a solve is asked for (importing numba takes a few tenths of a second).

Every inner loop here is written so that LLVM vectorises it: numba does not vectorise float
minima (NaN semantics), so minima are taken over integer keys instead. Two encodings:
- the auction's keys are int32, (quantised cost + price) << b | column, on an integer cost
  scale small enough that no key overflows (see ``solve``);
- float64 values of any sign map to int64 keys with the same order by flipping the low 63 bits
  of the negative ones (``_okey``, an involution), which gives exact float minima.
"""

import numpy as np
from numba import njit, prange

_IMAX32 = np.int32(2147483647)
_IMAX64 = np.int64(9223372036854775807)
_LOW63 = np.int64(9223372036854775807)
_MAX_INDEX_BITS = 20  # n <= 2**20 leaves the auction at least 2**8 cost levels


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
def _range(cost):
    n = cost.shape[0]
    bits = cost.reshape(n * n).view(np.int64)
    lo = _IMAX64
    hi = -_IMAX64
    for k in range(n * n):
        key = _okey(bits[k])
        lo = min(lo, key)
        hi = max(hi, key)
    out = np.empty(2, np.int64)
    out[0] = _okey(lo)
    out[1] = _okey(hi)
    f = out.view(np.float64)
    return f[0], f[1]


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
    # Gauss-Seidel forward auction with epsilon-scaling on integer costs (Bertsekas): an
    # unassigned row bids for its cheapest column (value cost + price), raising that price to
    # second-best value - cost + eps, so every phase ends with every row eps-happy.
    # keys[i, j] = cost_ij << b | j and prices are kept shifted by b, so a value is one int32
    # add and the column rides along in the low bits. Every price stays below about 4x the cost
    # range (prices are shifted to min 0 at each phase start; the auction needs no more than
    # the cost range plus eps above the cheapest free column); ``limit`` stops it otherwise:
    # its prices are a warm start only. Returns whether every phase ran to its end.
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


@njit(cache=True, nogil=True)
def augment(cost, v):
    # Exact stage: feasible duals u_i = min_j (cost_ij - v_j); each row takes its cheapest column
    # when that is still free (a tight edge: no dual change), and the rest get shortest
    # augmenting paths (Dijkstra on reduced costs, Jonker-Volgenant), which keep the duals
    # feasible and the matched edges tight. v is updated in place.
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
    return col4row, u


@njit(cache=True, nogil=True)
def warm_duals(cost, eps_start_rel, theta):
    # column duals v = -prices of the auction on the quantised costs, and whether it completed
    n = cost.shape[0]
    lo, hi = _range(cost)
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
def solve(cost, warm, eps_start_rel, theta):
    if warm:
        v = warm_duals(cost, eps_start_rel, theta)[0]
    else:
        v = np.zeros(cost.shape[0])
    col4row, u = augment(cost, v)
    return col4row, u, v


@njit(cache=True, nogil=True)
def pair_cost(x, y, squared):
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


@njit(cache=True, parallel=True)
def solve_costs(costs, warm, eps_start_rel, theta):
    r, n, _ = costs.shape
    perm = np.empty((r, n), np.int64)
    us = np.empty((r, n))
    vs = np.empty((r, n))
    for b in prange(r):
        perm[b], us[b], vs[b] = solve(costs[b], warm, eps_start_rel, theta)
    return perm, us, vs


@njit(cache=True, parallel=True)
def solve_points(x, y, squared, eps_start_rel, theta):
    r, n, _ = x.shape
    perm = np.empty((r, n), np.int64)
    total = np.empty(r)
    for b in prange(r):
        cost = pair_cost(x[b], y[b], squared)
        s = solve(cost, True, eps_start_rel, theta)[0]
        perm[b] = s
        acc = 0.0
        for i in range(n):
            acc += cost[i, s[i]]
        total[b] = acc
    return perm, total
