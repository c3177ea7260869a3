"""Compiled kernels of the exact assignment solver (see simulations.assignment for the method).

Module-level numba functions, so that numba's on-disk cache serves them to later processes;
imported only when a solve is asked for (importing numba takes a few tenths of a second).
"""

import numpy as np
from numba import njit, prange

_IMAX64 = np.int64(9223372036854775807)


@njit(cache=True, nogil=True)
def _values(row, prices, out, n):
    # cost + price of every column for one bidder, rounded to float32 (a warm start needs no more)
    for j in range(n):
        out[j] = np.float32(row[j] + prices[j])


@njit(cache=True, nogil=True)
def _min_key(bits, keys, n):
    # values >= 0, so their float32 bit patterns order like int32; (bits << 32 | j) carries the
    # column along, and an integer min reduction vectorises where a float one does not
    m = _IMAX64
    for j in range(n):
        k = (np.int64(bits[j]) << 32) | j
        keys[j] = k
        if k < m:
            m = k
    return m


@njit(cache=True, nogil=True)
def _min(keys, n):
    m = _IMAX64
    for j in range(n):
        if keys[j] < m:
            m = keys[j]
    return m


@njit(cache=True, nogil=True)
def auction(cost, prices, eps_start, eps_final, theta):
    # Gauss-Seidel forward auction for min sum cost[i, a(i)] (cost >= 0, float32): an unassigned
    # row bids for its cheapest column j (value cost + price), raising p_j by
    # (second - best + eps) >= eps (prices in float64, so every bid raises one), hence every
    # phase ends, with every row eps-happy (eps-complementary slackness).
    n = cost.shape[0]
    owner = np.empty(n, np.int64)
    queue = np.empty(n, np.int64)
    values = np.empty(n, np.float32)
    bits = values.view(np.int32)
    keys = np.empty(n, np.int64)
    pair = np.empty(2, np.int32)
    pair_values = pair.view(np.float32)
    eps = eps_start
    while True:
        owner[:] = -1
        for k in range(n):
            queue[k] = k
        head = 0
        tail = n
        waiting = n
        while waiting > 0:
            i = queue[head % n]
            head += 1
            waiting -= 1
            _values(cost[i], prices, values, n)
            best = _min_key(bits, keys, n)
            jbest = best & 0xFFFFFFFF
            keys[jbest] = _IMAX64
            second = _min(keys, n) if n > 1 else best
            pair[0] = np.int32(best >> 32)
            pair[1] = np.int32(second >> 32)
            prices[jbest] += np.float64(pair_values[1]) - np.float64(pair_values[0]) + eps
            previous = owner[jbest]
            owner[jbest] = i
            if previous >= 0:
                queue[tail % n] = previous
                tail += 1
                waiting += 1
        if eps <= eps_final:
            return
        eps = max(eps / theta, eps_final)


@njit(cache=True, nogil=True)
def augment(cost, v):
    # Shortest augmenting paths (Dijkstra on reduced costs) from the feasible duals
    # u_i = min_j (cost_ij - v_j), v; every row starts free; v is updated in place.
    n = cost.shape[0]
    u = np.empty(n)
    for i in range(n):
        m = np.inf
        for j in range(n):
            r = cost[i, j] - v[j]
            if r < m:
                m = r
        u[i] = m
    col4row = np.full(n, -1, np.int64)
    row4col = np.full(n, -1, np.int64)
    shortest = np.empty(n)
    path = np.empty(n, np.int64)
    order = np.arange(n - 1, -1, -1)
    remaining = np.empty(n, np.int64)
    rows_seen = np.empty(n, np.int64)
    cols_seen = np.empty(n, np.int64)
    for cur in range(n):
        remaining[:] = order
        left = n
        dist = 0.0
        i = cur
        sink = -1
        nrows = 0
        ncols = 0
        while sink == -1:
            rows_seen[nrows] = i
            nrows += 1
            ui = u[i]
            lowest = np.inf
            at = -1
            # prefer a free column on ties: the path ends sooner
            if nrows == 1:
                for k in range(left):
                    j = remaining[k]
                    r = cost[i, j] - ui - v[j]
                    shortest[j] = r
                    path[j] = i
                    if r < lowest or (r == lowest and row4col[j] == -1):
                        lowest = r
                        at = k
            else:
                for k in range(left):
                    j = remaining[k]
                    r = dist + cost[i, j] - ui - v[j]
                    s = shortest[j]
                    if r < s:
                        path[j] = i
                        shortest[j] = r
                        s = r
                    if s < lowest or (s == lowest and row4col[j] == -1):
                        lowest = s
                        at = k
            dist = lowest
            j = remaining[at]
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
            cols_seen[ncols] = j
            ncols += 1
            left -= 1
            remaining[at] = remaining[left]
        u[cur] += dist
        for q in range(1, nrows):
            i = rows_seen[q]
            u[i] += dist - shortest[col4row[i]]
        for q in range(ncols):
            j = cols_seen[q]
            v[j] -= dist - shortest[j]
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
def solve(cost, eps_final_rel, theta):
    n = cost.shape[0]
    lo = np.inf
    hi = -np.inf
    for i in range(n):
        for j in range(n):
            lo = min(lo, cost[i, j])
            hi = max(hi, cost[i, j])
    spread = hi - lo
    v = np.zeros(n)
    if spread > 0:
        # the auction sees the costs rescaled to [0, 1] in float32 (its prices are a warm start
        # only); the augmenting paths then work on the exact float64 costs
        scaled = np.empty((n, n), np.float32)
        for i in range(n):
            for j in range(n):
                scaled[i, j] = (cost[i, j] - lo) / spread
        prices = np.zeros(n)
        auction(scaled, prices, 0.25, eps_final_rel, theta)
        for j in range(n):
            v[j] = -prices[j] * spread
    col4row, u = augment(cost, v)
    return col4row, u, v


@njit(cache=True, nogil=True)
def pair_cost(x, y, squared):
    n, d = x.shape
    cost = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            s = 0.0
            for k in range(d):
                t = x[i, k] - y[j, k]
                s += t * t
            cost[i, j] = s if squared else np.sqrt(s)
    return cost


@njit(cache=True, parallel=True)
def solve_costs(costs, eps_final_rel, theta):
    r, n, _ = costs.shape
    perm = np.empty((r, n), np.int64)
    us = np.empty((r, n))
    vs = np.empty((r, n))
    for b in prange(r):
        perm[b], us[b], vs[b] = solve(costs[b], eps_final_rel, theta)
    return perm, us, vs


@njit(cache=True, parallel=True)
def solve_points(x, y, squared, eps_final_rel, theta):
    r, n, _ = x.shape
    perm = np.empty((r, n), np.int64)
    total = np.empty(r)
    for b in prange(r):
        cost = pair_cost(x[b], y[b], squared)
        s = solve(cost, eps_final_rel, theta)[0]
        perm[b] = s
        acc = 0.0
        for i in range(n):
            acc += cost[i, s[i]]
        total[b] = acc
    return perm, total
