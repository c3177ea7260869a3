"""The 2D part of the report: two moons with OT-CFM (Figures 4 and 7), 8 gaussians with DDPM
(Figure 3), each an ensemble of runs for lambda in {0, 1, inf} (`simulations.twod_sim`).

One section per experiment ("moons-otcfm", "8gaussians-ddpm"): W2 to held-out real points at
the last iteration. The verdict holds when fully synthetic ends farther from the data than
lambda = 0 beyond two standard errors of the difference and lambda = 1 ends no farther than
halfway between them; otherwise it is inconclusive (the size did not separate them).
"""

from __future__ import annotations

import math
from pathlib import Path

from simulations.twod_sim import TwoDConfig, TwoDSimulation
from stability.app.reproduce.section import EngineClock, Section
from stability.app.reproduce.sizes import ReproduceSize, TwoDSize
from stability.runs.runfolder import read_summary

LAMBDAS = (0.0, 1.0, math.inf)
# key: (model, data set, title, the paper's figure)
EXPERIMENTS = {
    "moons-otcfm": ("flow", "moons", "Two moons, OT-CFM", "Figures 4 and 7"),
    "8gaussians-ddpm": ("diffusion", "8gaussians", "8 gaussians, DDPM", "Figure 3"),
}


def engine_config(size: TwoDSize, model: str, data: str, seed: int) -> TwoDConfig:
    """The `TwoDConfig` of one experiment at `size` (sampler_steps: ODE steps for the flow,
    diffusion steps for DDPM)."""
    steps = {"ode_steps" if model == "flow" else "diffusion_steps": size.sampler_steps}
    return TwoDConfig(
        model=model,
        data=data,
        lams=LAMBDAS,
        seed=seed,
        n=size.real_points,
        runs=size.runs,
        iterations=size.iterations,
        epochs=size.epochs_per_iteration,
        init_epochs=size.initial_epochs,
        batch=size.batch_size,
        n_eval=size.eval_points,
        **steps,
    )


def plan(size: ReproduceSize, seed: int) -> dict[str, TwoDConfig]:
    """The two experiments' configurations, keyed by section (and folder under ``parts/2d``)."""
    sizes = {"moons-otcfm": size.moons, "8gaussians-ddpm": size.gaussians8}
    return {
        key: engine_config(sizes[key], model, data, seed)
        for key, (model, data, _, _) in EXPERIMENTS.items()
    }


def part_2d(out: Path, size: ReproduceSize, seed: int, clock: EngineClock) -> list[Section]:
    """Run (or resume) both experiments and return their sections."""
    sections = []
    for key, cfg in plan(size, seed).items():
        with clock.running():
            result = TwoDSimulation(cfg, out / "parts" / "2d" / key).run()
        sections.append(experiment_section(key, cfg, result))
    return sections


def experiment_section(key: str, cfg: TwoDConfig, result: dict) -> Section:
    """The section of one 2D experiment from its summary.csv (W2 at T per lambda, the floor:
    W2 between two real samples)."""
    _, _, title, figure = EXPERIMENTS[key]
    rows = read_summary(result["summary"])
    T = result["iterations"]
    w2 = {r["lam"]: r for r in rows if r["metric"] == "w2" and r["t"] == T}
    floor = next(r["mean"] for r in rows if r["metric"] == "w2_floor")
    gap = w2[math.inf]["mean"] - w2[0.0]["mean"]
    se = math.hypot(w2[math.inf]["se"], w2[0.0]["se"])
    collapses = gap > 2 * se
    stable = w2[1.0]["mean"] < w2[0.0]["mean"] + 0.5 * max(gap, 0)
    verdict = "holds" if collapses and stable else "inconclusive"
    return Section(
        key,
        "2d",
        title,
        "Retraining on its own samples only drifts away from the data; with real data mixed in "
        "(lambda = 1) the distance to the data stays close to retraining on real data only",
        figure,
        verdict,
        f"{cfg.runs} runs, n = {cfg.n}, {T} iterations: W2 to held-out data at T = "
        f"{w2[0.0]['mean']:.3f} (lambda 0), {w2[1.0]['mean']:.3f} (lambda 1), "
        f"{w2[math.inf]['mean']:.3f} (fully synthetic); floor {floor:.3f}."
        + ("" if verdict == "holds" else " At this size the difference is within the noise."),
        numbers={f"{lam:g}": {"w2": w2[lam]["mean"], "se": w2[lam]["se"]} for lam in LAMBDAS}
        | {"floor": floor},
        figures=[f for f in result["figures"] if f.endswith(("w2.png", "samples.png"))],
    )
