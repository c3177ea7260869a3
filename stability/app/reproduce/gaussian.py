"""The Gaussian part of the report: Proposition 1's collapse, the lambda sweep, the data policies.

Three sections, each from `simulations.gaussian_sim` runs (exact engine) under
``out/parts/gaussian``:

- "gaussian-collapse": a 1D Gaussian refit on its own samples only, E[sigma_t] against
  alpha(n)^(t+1) (Proposition 1, eqs (6), (19)) at several n;
- "gaussian-lambda": d = 2, n = 50, the W2 distance to the data's Gaussian after T iterations for
  lambda in `SWEEP_LAMBDAS` (Theorems 1-2 against Proposition 1);
- "gaussian-policies": mix, fully synthetic, accumulate and fresh data side by side.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from simulations.gaussian_sim import GaussianSimConfig, run_gaussian_simulation
from stability import rates
from stability.app.reproduce.section import EngineClock, Section, pyplot, save
from stability.app.reproduce.sizes import GaussianSize, ReproduceSize
from stability.runs.runfolder import read_summary

SWEEP_LAMBDAS = (0.0, 0.5, 1.0, 2.0, 5.0, math.inf)
POLICIES = (("mix", 1.0), ("mix", math.inf), ("accumulate", 1.0), ("fresh", 1.0))
# The lambda sweep and the policies: a 2D Gaussian with anisotropic covariance.
SWEEP_DIM, SWEEP_N, SWEEP_CONDITION = 2, 50, 10.0
# Proposition 1 is tested at t = 10 (or T when shorter), with |z| < 4.
COLLAPSE_T, COLLAPSE_Z = 10, 4.0


def plan(size: GaussianSize, seed: int) -> dict[str, GaussianSimConfig]:
    """The simulations of the Gaussian part at `size`, keyed by their folder under
    ``parts/gaussian``: ``collapse_n{n}`` per n, ``lambda_sweep``, ``policy_{policy}_{lam}``."""
    runs, T = size.runs, size.iterations
    todo = {
        f"collapse_n{n}": GaussianSimConfig(
            dim=1, n=n, lams=(math.inf,), runs=runs, iterations=T, seed=seed
        )
        for n in size.collapse_sample_sizes
    }
    common = dict(
        dim=SWEEP_DIM, n=SWEEP_N, runs=runs, iterations=T, seed=seed, data_cond=SWEEP_CONDITION
    )
    todo["lambda_sweep"] = GaussianSimConfig(lams=SWEEP_LAMBDAS, **common)
    for policy, lam in POLICIES:
        todo[f"policy_{policy}_{lam:g}"] = GaussianSimConfig(lams=(lam,), policy=policy, **common)
    return todo


def part_gaussian(out: Path, size: ReproduceSize, seed: int, clock: EngineClock) -> list[Section]:
    """Run the part's simulations (resuming finished ones) and return its three sections."""
    size = size.gaussian
    results = {}
    todo = plan(size, seed)
    for key, cfg in todo.items():
        with clock.running():
            results[key] = run_gaussian_simulation(
                cfg, out / "parts" / "gaussian" / key, figures=False
            )
    return [
        collapse_section(out, size, results),
        lambda_section(
            size, results["lambda_sweep"], sweep_figure(out, todo["lambda_sweep"], results)
        ),
        policies_section(out, results),
    ]


def collapse_section(out: Path, size: GaussianSize, results: dict) -> Section:
    """The section "gaussian-collapse": the mean standard deviation of the fully synthetic 1D
    runs at t = 10 against alpha(n)^11 (t = 0 is the fit on real data, so sigma_t has t + 1
    refits), |z| < 4 for every n."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    numbers, ok = {}, True
    for n in size.collapse_sample_sizes:
        rows = [
            r
            for r in read_summary(results[f"collapse_n{n}"]["summary"])
            if r["metric"] == "trace_sqrt_cov"
        ]
        rows.sort(key=lambda r: r["t"])
        t = np.array([r["t"] for r in rows])
        mean = np.array([r["mean"] for r in rows])
        se = np.array([r["se"] for r in rows])
        alpha = float(rates.alpha(n))
        k = min(COLLAPSE_T, size.iterations)
        expected = alpha ** (k + 1)
        z = abs(mean[k] - expected) / se[k]
        ok &= bool(z < COLLAPSE_Z)
        numbers[f"n={n}"] = dict(
            alpha=alpha, mean_t10=float(mean[k]), expected_t10=expected, z=float(z)
        )
        line = ax.semilogy(t, mean, label=f"n = {n}")[0]
        ax.semilogy(t, alpha ** (t + 1), "--", color=line.get_color(), lw=1)
    ax.set_xlabel("t")
    ax.set_ylabel("E[sigma_t] (dashed: alpha(n)^(t+1))")
    ax.set_title("Fully synthetic 1D Gaussian: collapse at rate alpha(n)")
    ax.legend()
    figure = save(fig, out / "figures" / "gaussian_collapse.png")
    largest = max(v["z"] for v in numbers.values())
    return Section(
        "gaussian-collapse",
        "gaussian",
        "Proposition 1: a Gaussian refit on its own samples collapses",
        "E[sigma_t] = alpha(n)^t sigma_0 with alpha(n) = E[chi_{n-1}]/sqrt(n-1) < 1",
        "Proposition 1, eqs (6), (19)",
        "holds" if ok else "fails",
        f"{size.runs} runs per n, exact engine: at t = 10 the mean standard deviation matches "
        f"alpha(n)^11 for n in {list(size.collapse_sample_sizes)} (largest |z| = {largest:.2f}); "
        "the larger n, the slower the collapse.",
        numbers=numbers,
        figures=[figure],
    )


def sweep_figure(out: Path, cfg: GaussianSimConfig, results: dict) -> str:
    """W2 against t for every lambda of the sweep `cfg` (the simulator's figure of that metric,
    drawn here: the part asks its simulations for no figures of their own)."""
    from simulations.gaussian_figures import draw_figure

    rows = [r for r in read_summary(results["lambda_sweep"]["summary"]) if r["metric"] == "w2"]
    path = out / "figures" / "gaussian_lambda_w2.png"
    draw_figure(cfg.resolve()[0], rows, "w2", path)
    return str(path)


def lambda_section(size: GaussianSize, result: dict, figure: str) -> Section:
    """The section "gaussian-lambda": W2 at T for every lambda; holds when every finite lambda
    stays within 3x lambda = 0's W2 and lambda = inf exceeds it."""
    T = size.iterations
    rows = read_summary(result["summary"])
    final = {r["lam"]: r for r in rows if r["metric"] == "w2" and r["t"] == T}
    med_theta = {r["lam"]: r["q50"] for r in rows if r["metric"] == "theta_err" and r["t"] == T}
    base = final[0.0]["mean"]
    table = [["lambda", "W2 at T (mean)", "q95", "theta_err at T (median)"]]
    for lam in SWEEP_LAMBDAS:
        table.append(
            [
                f"{lam:g}",
                f"{final[lam]['mean']:.4g}",
                f"{final[lam]['q95']:.4g}",
                f"{med_theta[lam]:.4g}",
            ]
        )
    finite = [lam for lam in SWEEP_LAMBDAS if math.isfinite(lam)]
    stable = all(final[lam]["mean"] < 3 * base for lam in finite)
    collapses = final[math.inf]["mean"] > 3 * base
    worst_finite = max(final[lam]["mean"] for lam in finite) / base
    return Section(
        "gaussian-lambda",
        "gaussian",
        "Mixing real data in keeps the Gaussian stable",
        "With a fixed fraction of real data (finite lambda) the iterates stay near theta*; "
        "fully synthetic retraining (lambda = inf) does not",
        "Theorems 1-2; Proposition 1",
        "holds" if stable and collapses else "fails",
        f"d = {SWEEP_DIM}, n = {SWEEP_N}, condition number {SWEEP_CONDITION:g}, {size.runs} runs, "
        f"T = {T}: the W2 distance to the data's Gaussian stays within {worst_finite:.2f}x that "
        f"of lambda = 0 for every finite lambda, and reaches {final[math.inf]['mean'] / base:.1f}x "
        "with lambda = inf.",
        numbers={
            f"{lam:g}": {"w2": final[lam]["mean"], "theta_err_median": med_theta[lam]}
            for lam in SWEEP_LAMBDAS
        },
        figures=[figure],
        table=table,
    )


def policies_section(out: Path, results: dict) -> Section:
    """The section "gaussian-policies": W2 from t = 0 to T per policy; holds when fully synthetic
    more than doubles it and every policy that keeps real data stays below twice its t = 0
    value."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    numbers = {}
    for policy, lam in POLICIES:
        summary = results[f"policy_{policy}_{lam:g}"]["summary"]
        rs = sorted((r for r in read_summary(summary) if r["metric"] == "w2"), key=lambda r: r["t"])
        label = "fully synthetic" if math.isinf(lam) else f"{policy}, lambda = {lam:g}"
        ax.semilogy([r["t"] for r in rs], [r["mean"] for r in rs], label=label)
        numbers[label] = {"w2_t0": rs[0]["mean"], "w2_T": rs[-1]["mean"]}
    ax.set_xlabel("t")
    ax.set_ylabel("mean W2 to the data's Gaussian")
    ax.legend()
    ax.set_title(f"Data policies (d = {SWEEP_DIM}, n = {SWEEP_N})")
    figure = save(fig, out / "figures" / "gaussian_policies.png")
    synthetic = numbers["fully synthetic"]
    diverge = synthetic["w2_T"] > 2 * synthetic["w2_t0"]
    bounded = all(v["w2_T"] < 2 * v["w2_t0"] for k, v in numbers.items() if k != "fully synthetic")
    return Section(
        "gaussian-policies",
        "gaussian",
        "Data policies side by side",
        "Keeping real data (mix, the paper), accumulating synthetic data (Gerstgrasser et al. "
        "2024) or adding fresh data (Alemohammad et al. 2023) avoids collapse; replacing does not",
        "section 3; related work",
        "holds" if diverge and bounded else "fails",
        "; ".join(f"{k}: W2 {v['w2_t0']:.3g} -> {v['w2_T']:.3g}" for k, v in numbers.items()),
        numbers=numbers,
        figures=[figure],
    )
