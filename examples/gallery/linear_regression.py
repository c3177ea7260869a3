"""Linear regression retrained on its own labels (Gerstgrasser et al. 2024).

With a Gaussian design in R^d and n rows, E tr((X^T X)^-1) = d / (n - d - 1): replacing the
labels gives a test error sigma^2 (1 + (t + 1) d / (n - d - 1)) growing linearly, accumulating
them sigma^2 (1 + d / (n - d - 1) sum_{j <= t+1} 1/j^2), bounded by the pi^2/6 factor (dotted).
"""

import math

import numpy as np
from common import arguments, curve, figure, run

args = arguments("linear_regression", __doc__.splitlines()[0])
size = (
    dict(n=30, runs=4, iterations=3, block_size=4)
    if args.quick
    else dict(n=40, runs=100, iterations=20)
)
d, sigma = 10, 1.0
common = dict(
    model="linear-regression", params=(f"noise={sigma}",), data="linear",
    data_params=(f"dim={d}", f"sigma={sigma}"), n_eval=1000, **size,
)  # fmt: skip
settings = {
    "replace (fully synthetic)": (
        run(args.folder, "replace", lams=(math.inf,), **common),
        math.inf,
    ),
    "accumulate, lambda = 1": (
        run(args.folder, "accumulate", lams=(1.0,), policy="accumulate", **common),
        1.0,
    ),
    "accumulate-subsample, lambda = 1": (
        run(args.folder, "subsample", lams=(1.0,), policy="accumulate-subsample", **common),
        1.0,
    ),
}
curves = [(name, *curve(rows, "test_mse", lam), {}) for name, (rows, lam) in settings.items()]
t = np.arange(size["iterations"] + 1)
rate = d / (size["n"] - d - 1)
curves.append(
    ("replace: sigma^2 (1 + (t+1) d/(n-d-1))", t, sigma**2 * (1 + (t + 1) * rate), None, {})
)
basel = np.cumsum(1.0 / np.arange(1, len(t) + 1) ** 2)
curves.append(("accumulate: Basel sum", t, sigma**2 * (1 + rate * basel), None, {"color": "0.4"}))
path = figure(
    args.folder.with_suffix(".png"),
    f"Least squares, d = {d}, n = {size['n']}",
    [("test error", curves)],
)
print(f"wrote {path}")
