"""Which policies keep which models stable: every shipped model under every policy.

For each model, its main metric (W2 to held-out real data, the categorical model's total
variation to held-out frequencies, the regression's test error) after T iterations, as a ratio
to t = 0 (mean over runs). The field's policies run fully synthetic (lambda = inf), so that the
policy alone has to hold the model; mix and the accumulating policies keep the real data
(lambda = 1). Writes OUT/stability_table.md and OUT/stability_table.png.
"""

import math

import numpy as np
from common import arguments, run

MODELS = {  # name: (config, main metric)
    "gaussian (2D)": (dict(model="gaussian", data="gaussian", dim=2), "w2"),
    "gmm (EM, 3 modes)": (dict(model="gmm", data="mixture"), "w2"),
    "kde (h = 0.3)": (dict(model="kde", params=("bandwidth=0.3",), dim=1), "w2"),
    "ngram (30 Zipf symbols)": (
        dict(model="ngram", data="categorical", data_params=("categories=30",)),
        "tv",
    ),
    "linear regression (d = 10)": (
        dict(model="linear-regression", params=("noise=1",), data="linear"),
        "test_mse",
    ),
}
POLICIES = {  # name: (policy, lambda, params)
    "mix, lam = inf": ("mix", math.inf, ()),
    "mix, lam = 1": ("mix", 1.0, ()),
    "accumulate, lam = 1": ("accumulate", 1.0, ()),
    "accumulate-subsample, lam = 1": ("accumulate-subsample", 1.0, ()),
    "curate (top half), lam = inf": ("curate", math.inf, ()),
    "verify (near-real-data), lam = inf": ("verify", math.inf, ("verifier=near-real-data",)),
    "self-correct (gamma = 0.5), lam = inf": ("self-correct", math.inf, ("strength=0.5",)),
}

args = arguments("stability_table", __doc__.splitlines()[0])
size = dict(n=40, runs=2, iterations=2) if args.quick else dict(n=100, runs=20, iterations=20)
ratios = np.full((len(MODELS), len(POLICIES)), np.nan)
for i, (config, metric) in enumerate(MODELS.values()):
    for j, (policy, lam, params) in enumerate(POLICIES.values()):
        params = list(params)
        if config["model"] == "ngram" and policy == "self-correct":
            params.append("correction=nearest-real")  # tokens move to real tokens
        rows = run(
            args.folder, f"{i}_{j}", lams=(lam,), policy=policy, policy_params=tuple(params),
            **config, **size,
        )  # fmt: skip
        means = {r["t"]: r["mean"] for r in rows if r["metric"] == metric}
        ratios[i, j] = means[size["iterations"]] / means[0]


def verdict(r: float) -> str:
    return f"**{r:.2f}**" if r > 1.25 else f"{r:.2f}"


lines = [
    f"| model (metric ratio t = {size['iterations']} / t = 0) | " + " | ".join(POLICIES) + " |",
    "|---" * (len(POLICIES) + 1) + "|",
]
for i, (model, (_, metric)) in enumerate(MODELS.items()):
    cells = " | ".join(verdict(r) for r in ratios[i])
    lines.append(f"| {model} ({metric}) | {cells} |")
table = "\n".join(lines) + "\n"
args.folder.mkdir(parents=True, exist_ok=True)
(args.folder / "stability_table.md").write_text(table)
print(table)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from stability.runs.plots import save_figure  # noqa: E402

fig, ax = plt.subplots(figsize=(11, 4.2))
image = ax.imshow(np.log2(ratios), cmap="RdYlGn_r", vmin=-2, vmax=2, aspect="auto")
for (i, j), r in np.ndenumerate(ratios):
    ax.text(j, i, f"{r:.2f}", ha="center", va="center", fontsize=8)
ax.set_xticks(
    range(len(POLICIES)), [p.replace(", ", "\n").replace(" (", "\n(") for p in POLICIES], fontsize=7
)
ax.set_yticks(range(len(MODELS)), list(MODELS), fontsize=8)
fig.colorbar(image, label="log2(metric at T / metric at 0)")
ax.set_title(
    f"Main metric after {size['iterations']} iterations relative to t = 0 (n = {size['n']})"
)
fig.tight_layout()
path = args.folder.with_suffix(".png")
save_figure(fig, path)
print(f"wrote {path} and {args.folder / 'stability_table.md'}")
