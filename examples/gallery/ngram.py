"""A categorical model of Zipf-distributed symbols retrained on its own samples (Suresh et al. 2024).

Fully synthetic, refitting by counts is the Wright-Fisher chain: rare symbols vanish for good
and the Gini-Simpson index decays as (1 - 1/n)^t (dotted, exact); real data in every training
set keep the tail.
"""

import math

from common import arguments, curve, figure, lam_label, run

args = arguments("ngram", __doc__.splitlines()[0])
size = (
    dict(n=50, runs=4, iterations=3, block_size=4)
    if args.quick
    else dict(n=100, runs=40, iterations=40)
)
common = dict(model="ngram", data="categorical", data_params=("categories=30",), **size)
lams = (0.5, 1.0, math.inf)
mix = run(args.folder, "mix", lams=lams, **common)
acc = run(args.folder, "accumulate", lams=(1.0,), policy="accumulate", **common)
panels = []
for metric, label in (
    ("support", "symbols of positive probability"),
    ("gini_simpson", "Gini-Simpson index"),
):
    curves = [(lam_label(lam), *curve(mix, metric, lam), {}) for lam in lams]
    curves.append(("accumulate, lambda = 1", *curve(acc, metric, 1.0), {"ls": "--"}))
    if metric == "gini_simpson":
        t, g, _ = curve(mix, metric, math.inf)
        curves.append(("(1 - 1/n)^t G_0", t, g[0] * (1 - 1 / size["n"]) ** t, None, {}))
    panels.append((label, curves))
path = figure(args.folder.with_suffix(".png"), "Categorical model of 30 Zipf symbols", panels)
print(f"wrote {path}")
