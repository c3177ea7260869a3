"""Gaussian mixture fitted by EM, retrained on its own samples (Shumailov et al. 2023).

Three well-separated 1D components. Fully synthetic retraining (lambda = inf) forgets the data:
W2 to held-out real data and the held-out negative log-likelihood grow; keeping the real data
(lambda = 0.5, 1) or accumulating every batch keeps the mixture close to it.
"""

import math

from common import arguments, curve, figure, lam_label, run

args = arguments("gmm_em", __doc__.splitlines()[0])
size = (
    dict(n=50, runs=4, iterations=3, block_size=4)
    if args.quick
    else dict(n=200, runs=20, iterations=20)
)
common = dict(model="gmm", params=("components=3",), data="mixture", **size)
lams = (0.0, 0.5, 1.0, math.inf)
mix = run(args.folder, "mix", lams=lams, **common)
acc = run(args.folder, "accumulate", lams=(1.0,), policy="accumulate", **common)
panels = []
for metric, label in (
    ("w2", "W2 to held-out real data"),
    ("nll", "held-out negative log-likelihood"),
):
    curves = [(lam_label(lam), *curve(mix, metric, lam), {}) for lam in lams]
    curves.append(("accumulate, lambda = 1", *curve(acc, metric, 1.0), {"ls": "--"}))
    panels.append((label, curves))
path = figure(
    args.folder.with_suffix(".png"), "GMM by EM (3 components), mix vs accumulate", panels
)
print(f"wrote {path}")
