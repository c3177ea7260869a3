"""The sizes of `stability reproduce`: what each part runs at ``tiny``, ``quick`` and ``full``.

One frozen dataclass per part says how large its experiments are, with field names that say what
they count; `ReproduceSize` bundles the four. `TINY` is the smoke run of the test suite, `QUICK`
(the default) a few minutes on two cores, `FULL` the paper's sizes where a CPU allows. The parts
(`theory`, `gaussian`, `twod`, `deep`) turn a size into engine configurations with their
``plan`` functions; nothing else reads these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from stability.errors import UsageError


@dataclass(frozen=True)
class TheorySize:
    """Sizes of the theory part (every check, and the Jacobian of G_lambda against lambda).

    Attributes
    ----------
    check_mode : str
        Monte-Carlo sizes of the checks, as ``stability check``: "quick", "default" or
        "thorough".
    jacobian_lambdas : int
        Points of the log-spaced lambda grid on [0.02, 20] where the spectral radius of
        J G_lambda(theta*) is compared with Theorem 1's bound (eq 11).
    """

    check_mode: str
    jacobian_lambdas: int


@dataclass(frozen=True)
class GaussianSize:
    """Sizes of the Gaussian part (Proposition 1's collapse, the lambda sweep, the policies).

    Attributes
    ----------
    runs : int
        Independent Monte-Carlo runs of every simulation.
    iterations : int
        Retraining iterations T of every simulation.
    collapse_sample_sizes : tuple of int
        The sample sizes n at which the 1D fully synthetic collapse is compared with alpha(n)^t.
    """

    runs: int
    iterations: int
    collapse_sample_sizes: tuple[int, ...]


@dataclass(frozen=True)
class TwoDSize:
    """Sizes of one 2D experiment (an ensemble of independent runs, `simulations.twod_sim`).

    Attributes
    ----------
    real_points : int
        n, the real training points of every run.
    runs : int
        Independent runs (seeds) trained as one ensemble.
    iterations : int
        Retraining iterations T after the fit on real data.
    epochs_per_iteration : float
        Passes over n points of each retraining (Algorithm 1's fine-tune).
    initial_epochs : float
        Passes of the fit on real data only (t = 0).
    batch_size : int
        Points per optimisation step.
    sampler_steps : int
        Euler steps of the flow's ODE (OT-CFM) or diffusion steps (DDPM).
    eval_points : int
        Generated points compared with held-out real points (W1, W2) at every iteration.
    """

    real_points: int
    runs: int
    iterations: int
    epochs_per_iteration: float
    initial_epochs: float
    batch_size: int
    sampler_steps: int
    eval_points: int


@dataclass(frozen=True)
class DeepSize:
    """Sizes of the deep part: EDM retrained on the bundled digits (the stand-in for Figure 2).

    Every (seed, lambda) run is one ``deep retrain`` run (`deep.retrain.run_deep`); the fields
    left out here take `deep.retrain.quick_config`'s values (the tiny DDPM++ network, EDM's
    loss and Heun sampler, 250-image generation batches).

    Attributes
    ----------
    seeds : int
        Independent replicates of the whole lambda sweep (error bars and the baseline test).
    resolution : int
        Side of the digits images in pixels (8x8 digits resampled).
    real_images : int
        n, the real images (the first n digits). Every lambda generates n images per iteration
        (its synthetic data and the metrics' sample): FID is biased by the sample size, so the
        lambdas are compared on samples of one size.
    iterations : int
        Retraining iterations T.
    kimg_per_iteration : float
        Thousands of images seen by each retraining (fine-tune).
    initial_kimg : float
        Thousands of images seen by the fit on real data at t = 0.
    batch_size : int
        Images per optimisation step.
    sampler_steps : int
        Steps of EDM's Heun sampler (2 x steps - 1 network evaluations per image).
    learning_rate : float
        Adam's learning rate after the ramp-up.
    lr_rampup_kimg : float
        Linear learning-rate ramp-up, in thousands of images.
    ema_halflife_kimg : float
        Half-life of the weights' EMA (the sampled network), in thousands of images.
    rampup : str
        "continue": the learning-rate and EMA ramp-ups count images across iterations, as when
        a training state is resumed (the paper: "the next retraining step resumes from this
        checkpoint"); "restart": every retraining starts them from 0 (`deep.train`). At a few
        kimg per retraining, "restart" samples from an EMA whose half-life restarted at 0,
        nearly the raw weights, unlike the t = 0 network: the reason the sizes use "continue".
    """

    seeds: int
    resolution: int
    real_images: int
    iterations: int
    kimg_per_iteration: float
    initial_kimg: float
    batch_size: int
    sampler_steps: int
    learning_rate: float
    lr_rampup_kimg: float
    ema_halflife_kimg: float
    rampup: str


@dataclass(frozen=True)
class ReproduceSize:
    """The sizes of every part of one `stability reproduce` run."""

    name: str
    theory: TheorySize
    gaussian: GaussianSize
    moons: TwoDSize  # two moons with OT-CFM (Figures 4 and 7)
    gaussians8: TwoDSize  # 8 gaussians with DDPM (Figure 3)
    deep: DeepSize


TINY = ReproduceSize(
    name="tiny",
    theory=TheorySize(check_mode="quick", jacobian_lambdas=5),
    gaussian=GaussianSize(runs=200, iterations=20, collapse_sample_sizes=(5, 20)),
    moons=TwoDSize(
        real_points=48,
        runs=2,
        iterations=2,
        epochs_per_iteration=2,
        initial_epochs=4,
        batch_size=16,
        sampler_steps=4,
        eval_points=48,
    ),
    gaussians8=TwoDSize(
        real_points=48,
        runs=2,
        iterations=2,
        epochs_per_iteration=2,
        initial_epochs=4,
        batch_size=16,
        sampler_steps=25,
        eval_points=48,
    ),
    deep=DeepSize(
        seeds=2,
        resolution=8,
        real_images=48,
        iterations=1,
        kimg_per_iteration=0.064,
        initial_kimg=0.128,
        batch_size=16,
        sampler_steps=4,
        learning_rate=1e-3,
        lr_rampup_kimg=0.0,
        ema_halflife_kimg=0.05,
        rampup="continue",
    ),
)

QUICK = ReproduceSize(
    name="quick",
    theory=TheorySize(check_mode="quick", jacobian_lambdas=12),
    gaussian=GaussianSize(runs=4000, iterations=100, collapse_sample_sizes=(5, 20, 100)),
    moons=TwoDSize(
        real_points=500,
        runs=4,
        iterations=5,
        epochs_per_iteration=40,
        initial_epochs=400,
        batch_size=256,
        sampler_steps=40,
        eval_points=500,
    ),
    gaussians8=TwoDSize(
        real_points=1000,
        runs=4,
        iterations=5,
        epochs_per_iteration=40,
        initial_epochs=400,
        batch_size=256,
        sampler_steps=50,
        eval_points=1000,
    ),
    # 3 seeds, not 2: with 2, Student's critical value (1 degree of freedom) is 12.7 and the
    # baseline comparison cannot conclude. The digits at their native 8x8 (not resampled to
    # 16x16): with one thread, 2.4 s of CPU per kimg and 2.1 s per 200 images of 10 Heun steps,
    # against 4.7 and 5.2 s at 16x16. Each seed's 8 kimg fit at t = 0 is shared by its four
    # lambdas, then 2 retrainings of 1.5 kimg (7.5 epochs of the 200 images) per lambda: about
    # 80 s of CPU per seed. A half-life of the EMA (the sampled network) of 0.5 kimg lets a
    # retraining show in the samples it produces (with 2 kimg, 1.5 kimg moves the EMA 40% of
    # the way). The t = 0 network is not converged at this budget: lambda = 0 still improves
    # (its drift from t = 0 to T is reported beside the verdict; --full fits 120 kimg at t = 0).
    deep=DeepSize(
        seeds=3,
        resolution=8,
        real_images=200,
        iterations=2,
        kimg_per_iteration=1.5,
        initial_kimg=8.0,
        batch_size=64,
        sampler_steps=10,
        learning_rate=2e-3,
        lr_rampup_kimg=2.0,
        ema_halflife_kimg=0.5,
        rampup="continue",
    ),
)

FULL = ReproduceSize(
    name="full",
    theory=TheorySize(check_mode="default", jacobian_lambdas=24),
    gaussian=GaussianSize(runs=100000, iterations=200, collapse_sample_sizes=(5, 20, 100, 1000)),
    # Figure 7's setting (simulate flow's defaults).
    moons=TwoDSize(
        real_points=1000,
        runs=50,
        iterations=20,
        epochs_per_iteration=150,
        initial_epochs=600,
        batch_size=256,
        sampler_steps=100,
        eval_points=1000,
    ),
    gaussians8=TwoDSize(
        real_points=10000,
        runs=10,
        iterations=20,
        epochs_per_iteration=200,
        initial_epochs=800,
        batch_size=256,
        sampler_steps=100,
        eval_points=10000,
    ),
    # All 1797 digits, 10 epochs per retraining as in the paper's CIFAR-10 runs, 10 iterations.
    deep=DeepSize(
        seeds=3,
        resolution=16,
        real_images=1797,
        iterations=10,
        kimg_per_iteration=18.0,
        initial_kimg=120.0,
        batch_size=64,
        sampler_steps=18,
        learning_rate=2e-3,
        lr_rampup_kimg=2.0,
        ema_halflife_kimg=2.0,
        rampup="continue",
    ),
)

SIZE_TABLE: dict[str, ReproduceSize] = {s.name: s for s in (TINY, QUICK, FULL)}
SIZES = tuple(SIZE_TABLE)


def size_named(name: str) -> ReproduceSize:
    """The sizes called `name` ("tiny", "quick" or "full"); UsageError for any other name."""
    if name not in SIZE_TABLE:
        raise UsageError(f"size must be one of {', '.join(SIZES)}, got {name!r}")
    return SIZE_TABLE[name]
