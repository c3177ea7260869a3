"""Compiled kernels of the exact assignment solver (see simulations.assignment for the method).

Module-level numba functions, so that numba's on-disk cache serves them to later processes;
imported only when a solve is asked for (importing numba takes a few tenths of a second).
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def auction(cost, prices, eps_start, eps_final, theta):
    # Gauss-Seidel forward auction for min sum cost[i, a(i)]: an unassigned row bids for its
    # cheapest column j (value cost + price), raising p_j by (second - best + eps) >= eps,
    # so every phase ends, with every row eps-happy (eps-complementary slackness).
    n = cost.shape[0]
    owner = np.empty(n, np.int64)
    assigned = np.empty(n, np.int64)
    queue = np.empty(n, np.int64)
    eps = eps_start
    while True:
        owner[:] = -1
        assigned[:] = -1
        for k in range(n):
            queue[k] = k
        head = 0
        tail = n
        waiting = n
        while waiting > 0:
            i = queue[head % n]
            head += 1
            waiting -= 1
            best = np.inf
            second = np.inf
            jbest = 0
            for j in range(n):
                w = cost[i, j] + prices[j]
                if w < best:
                    second = best
                    best = w
                    jbest = j
                elif w < second:
                    second = w
            if n == 1:
                second = best
            prices[jbest] += second - best + eps
            previous = owner[jbest]
            owner[jbest] = i
            assigned[i] = jbest
            if previous >= 0:
                assigned[previous] = -1
                queue[tail % n] = previous
                tail += 1
                waiting += 1
        if eps <= eps_final:
            return assigned
        eps = max(eps / theta, eps_final)


@njit(cache=True, nogil=True)
def augment(cost, v):
    # Shortest augmenting paths from feasible duals (u, v); v is updated in place.
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
    remaining = np.empty(n, np.int64)
    seen_row = np.zeros(n, np.bool_)
    seen_col = np.zeros(n, np.bool_)
    for cur in range(n):
        shortest[:] = np.inf
        path[:] = -1
        seen_row[:] = False
        seen_col[:] = False
        for k in range(n):
            remaining[k] = n - 1 - k
        left = n
        dist = 0.0
        i = cur
        sink = -1
        while sink == -1:
            seen_row[i] = True
            lowest = np.inf
            at = -1
            for k in range(left):
                j = remaining[k]
                r = dist + cost[i, j] - u[i] - v[j]
                if r < shortest[j]:
                    path[j] = i
                    shortest[j] = r
                # prefer a free column on ties: the path ends sooner
                if shortest[j] < lowest or (shortest[j] == lowest and row4col[j] == -1):
                    lowest = shortest[j]
                    at = k
            dist = lowest
            j = remaining[at]
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
            seen_col[j] = True
            left -= 1
            remaining[at] = remaining[left]
        u[cur] += dist
        for i in range(n):
            if seen_row[i] and i != cur:
                u[i] += dist - shortest[col4row[i]]
        for j in range(n):
            if seen_col[j]:
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
    # a positive epsilon whatever the costs: every bid raises a price, so the auction ends
    eps_final = spread * eps_final_rel if spread > 0 else 1.0
    prices = np.zeros(n)
    auction(cost, prices, max(spread / 4.0, eps_final), eps_final, theta)
    v = -prices
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
