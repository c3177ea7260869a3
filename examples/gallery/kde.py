"""A kernel density estimate retrained on its own samples (Kazdan et al. 2024).

Each refit on its own samples adds the kernel's variance h^2: fully synthetic, the KDE's
variance follows E[V_t] = (1 - 1/n) E[V_{t-1}] + h^2 (dotted, exact); accumulating or
accumulating and subsampling the data keeps it near the data's.
"""

import math

import numpy as np
from common import arguments, curve, figure, run

args = arguments("kde", __doc__.splitlines()[0])
size = (
    dict(n=50, runs=4, iterations=3, block_size=4)
    if args.quick
    else dict(n=100, runs=40, iterations=30)
)
h = 0.3
common = dict(model="kde", params=(f"bandwidth={h}",), data="gaussian", dim=1, **size)
settings = {
    "fully synthetic": run(args.folder, "mix", lams=(math.inf,), **common),
    "accumulate, lambda = 1": run(
        args.folder, "accumulate", lams=(1.0,), policy="accumulate", **common
    ),
    "accumulate-subsample, lambda = 1": run(
        args.folder, "subsample", lams=(1.0,), policy="accumulate-subsample", **common
    ),
}
lams = {"fully synthetic": math.inf}
panels = []
for metric, label in (("trace_cov", "variance of the KDE"), ("w2", "W2 to held-out real data")):
    curves = [
        (name, *curve(rows, metric, lams.get(name, 1.0)), {}) for name, rows in settings.items()
    ]
    if metric == "trace_cov":
        n, t = size["n"], np.arange(size["iterations"] + 1)
        v = [(1 - 1 / n) + h**2]  # data N(0, 1)
        for _ in t[1:]:
            v.append((1 - 1 / n) * v[-1] + h**2)
        curves.append(("E[V_t], fully synthetic (exact)", t, np.array(v), None, {}))
    panels.append((label, curves))
path = figure(args.folder.with_suffix(".png"), f"Gaussian KDE, bandwidth h = {h}", panels)
print(f"wrote {path}")
