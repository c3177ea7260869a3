"""Verification of synthetic samples (Feng et al. 2024).

A KDE on a three-component mixture, fully synthetic: unverified, every generation adds the
kernel's variance and the modes blur into each other. Verifiers that reject samples outside the
data's range, less likely than the data under its Gaussian fit, or farther from the real points
than their own nearest-neighbour distances, all stop the variance growing; none stops W2 from
growing: a verifier judges one sample at a time and cannot see the proportions between the
modes, which drift as in a Wright-Fisher chain (the KDE resamples its own points).
"""

import math

from common import arguments, curve, figure, run

args = arguments("verify", __doc__.splitlines()[0])
if args.quick:
    size = dict(n=60, runs=4, iterations=3, block_size=4)
else:
    size = dict(n=150, runs=30, iterations=25)
common = dict(model="kde", params=("bandwidth=0.4",), data="mixture", lams=(math.inf,), **size)
settings = {"unverified": run(args.folder, "mix", **common)}
for verifier in ("within-data-range", "likely-under-data", "near-real-data"):
    settings[f"verify: {verifier}"] = run(
        args.folder, verifier, policy="verify", policy_params=(f"verifier={verifier}",), **common
    )
panels = [
    (label, [(name, *curve(rows, metric, math.inf), {}) for name, rows in settings.items()])
    for metric, label in (("trace_cov", "variance of the KDE"), ("w2", "W2 to held-out real data"))
]
title = "KDE (h = 0.4) on a 3-component mixture, fully synthetic"
print(f"wrote {figure(args.folder.with_suffix('.png'), title, panels)}")
