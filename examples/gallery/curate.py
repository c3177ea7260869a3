"""Curation of synthetic samples by a reward (Ferbach et al. 2024).

A 1D Gaussian model; the reward is the first coordinate. Keeping the top half of each synthetic
batch moves the mean by sd_t phi(0)/0.5 per iteration (the truncated-normal shift, dotted:
with sd_t shrinking by the truncated variance 1 - 2/pi each step) when fully synthetic; the
real data hold it back (lambda = 1), and Bradley-Terry choices between two candidates drift
more slowly.
"""

import math

import numpy as np
from common import arguments, curve, figure, run
from scipy import stats

args = arguments("curate", __doc__.splitlines()[0])
size = (
    dict(n=50, runs=4, iterations=3, block_size=4)
    if args.quick
    else dict(n=200, runs=40, iterations=15)
)
common = dict(model="gaussian", data="gaussian", dim=1, policy="curate", **size)
settings = {
    "top half, fully synthetic": (
        run(args.folder, "top_inf", lams=(math.inf,), **common),
        math.inf,
    ),
    "top half, lambda = 1": (run(args.folder, "top_1", lams=(1.0,), **common), 1.0),
    "Bradley-Terry (2 candidates), fully synthetic": (
        run(args.folder, "bt_inf", lams=(math.inf,), policy_params=("candidates=2",), **common),
        math.inf,
    ),
}
panels = []
for metric, label in (("mean_x1", "model mean"), ("trace_cov", "model variance")):
    curves = [(name, *curve(rows, metric, lam), {}) for name, (rows, lam) in settings.items()]
    t, m, _ = curve(settings["top half, fully synthetic"][0], "mean_x1", math.inf)
    _, v, _ = curve(settings["top half, fully synthetic"][0], "trace_cov", math.inf)
    shrink = 1 - (stats.norm.pdf(0) / 0.5) ** 2  # variance of the top half of N(0, 1)
    if metric == "mean_x1":
        steps = math.sqrt(v[0]) * stats.norm.pdf(0) / 0.5 * np.sqrt(shrink) ** np.arange(len(t))
        curves.append(
            (
                "truncated-normal shift",
                t,
                m[0] + np.concatenate([[0], np.cumsum(steps[:-1])]),
                None,
                {},
            )
        )
    else:
        curves.append(("truncated variance", t, v[0] * shrink**t, None, {}))
    panels.append((label, curves))
path = figure(args.folder.with_suffix(".png"), "Curation by the reward r(x) = x", panels)
print(f"wrote {path}")
