"""Self-correction of synthetic samples (Gillman et al. 2024).

A 2D Gaussian refitted only on its own n = 20 samples collapses (Proposition 1 of the paper).
Moving each sample a fraction gamma of the way along the optimal transport map from the
samples' Gaussian to the real data's (correction gaussian-ot) slows the collapse at
gamma = 0.05 and stops it from gamma = 0.2 on; gamma = 1 resets the model to the real data's
moments.
"""

import math

from common import arguments, curve, figure, run

args = arguments("self_correct", __doc__.splitlines()[0])
size = dict(runs=4, iterations=3, block_size=4) if args.quick else dict(runs=40, iterations=40)
common = dict(model="gaussian", data="gaussian", dim=2, n=20, lams=(math.inf,), **size)
settings = {
    f"gamma = {g:g}": run(
        args.folder,
        f"gamma{g:g}",
        policy="self-correct",
        policy_params=(f"strength={g}",),
        **common,
    )
    for g in (0.0, 0.05, 0.2, 1.0)
}
# tr Sigma_t is a martingale under the unbiased estimator: its mean stays put while most runs
# collapse, so the first panel shows the median (band: 5% to 95% of the runs).
panels = [
    (
        "median tr Sigma_t",
        [(k, *curve(r, "trace_cov", math.inf, "q50"), {}) for k, r in settings.items()],
    ),
    ("W2 to held-out real data", [(k, *curve(r, "w2", math.inf), {}) for k, r in settings.items()]),
]
title = "Fully synthetic 2D Gaussian (n = 20) with self-correction"
print(f"wrote {figure(args.folder.with_suffix('.png'), title, panels)}")
