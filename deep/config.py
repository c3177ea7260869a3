"""The options of an image-scale retraining run (`stability deep retrain`): `DeepConfig`, the
quick setting, the network each configuration builds, and the checks every option passes before
a run folder is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

from deep.augment import AUGMENT_DIM, paper_default
from deep.edm import LATENTS
from deep.methods import METHODS, SPACINGS, OTCFMNet, make_method, net_from_dict
from deep.status import STATUS_KIMG, STATUS_SEC
from deep.train import FORMAT, TrainOptions, load_weights
from deep.unet import UNetConfig
from stability.errors import UsageError, check_lam, check_n
from stability.loop import Policy

NETS = ("auto", "tiny", "cifar10", "ffhq64")


@dataclass(frozen=True)
class DeepConfig:
    """Everything that determines a deep retraining run (see the CLI for meanings)."""

    data: str = "digits"
    resolution: int | None = None
    n: int | None = None
    model: str = "edm"
    net: str = "auto"
    lam: float = 1.0
    policy: str = "mix"
    iterations: int = 3
    kimg: float = 5000.0
    init: str | None = None
    init_kimg: float = 0.0
    n_gen: int | None = None
    fixed_seeds: bool = False
    sampler_steps: int = 18
    s_churn: float = 0.0
    ode_solver: str = "dopri5"
    ode_tol: float = 1e-5
    ode_steps: int = 100
    ddim_steps: int = 100
    ddim_clip: bool = True
    ddim_spacing: str = "leading"
    # EDM's augmentation probability; None: the paper's runs (0.12 on cifar10=, 0.15 on ffhq=,
    # 0 on other data: the digits stand-ins are short fine-tunes of a network without
    # augmentation inputs, see deep.augment.paper_default)
    augment: float | None = None
    latents: str = "float32"  # dtype of the per-seed latent draws (deep.edm.image_noise)
    features: str = "auto"
    gen_batch: int = 256
    batch: int = 256
    lr: float | None = None
    lr_rampup_kimg: float | None = None
    ema_halflife_kimg: float | None = None  # None: the model's default (deep.train)
    ema_decay: float | None = None
    rampup: str = "restart"
    n_fresh: int | None = None
    subsample_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "fp32"
    compile: bool = False
    snap_kimg: float | None = None  # training-state snapshots inside a fit (None: none)
    status_kimg: float = STATUS_KIMG  # status lines (deep.status) every this many kimg ...
    status_sec: float = STATUS_SEC  # ... or seconds

    def options(self) -> dict:
        """The settings that determine the numbers, JSON-able, for config.json.

        lam = inf is written "inf"; device, batching and reporting settings are left out.
        """
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["lam"] = self.lam if math.isfinite(self.lam) else "inf"
        d["augment"] = self.augment_probability()
        # Device, compilation, batching of generation, snapshots and status lines change speed
        # or reporting, not the numbers.
        for k in ("device", "compile", "gen_batch", "snap_kimg", "status_kimg", "status_sec"):
            d.pop(k)
        return d

    def augment_probability(self) -> float:
        """--augment, or the paper's value for the data (deep.augment.paper_default)."""
        if self.augment is None:
            return paper_default(self.data, self.model)
        return float(self.augment)

    def method(self):
        """The model family with its sampler settings (deep.methods)."""
        if self.model == "edm":
            return make_method(
                "edm",
                steps=self.sampler_steps,
                s_churn=self.s_churn,
                augment=self.augment_probability(),
                latents=self.latents,
            )
        if self.model == "otcfm":
            return make_method(
                "otcfm",
                solver=self.ode_solver,
                tol=self.ode_tol,
                euler_steps=self.ode_steps,
                latents=self.latents,
            )
        if self.model == "ddpm":
            return make_method(
                "ddpm",
                ddim_steps=self.ddim_steps,
                clip_denoised=self.ddim_clip,
                spacing=self.ddim_spacing,
                latents=self.latents,
            )
        raise UsageError(f"unknown model {self.model!r}; choose one of {', '.join(METHODS)}")

    def train_options(self) -> TrainOptions:
        """The training settings, with the model's default learning rate and ramp-up where unset."""
        method = self.method()
        return TrainOptions(
            batch=self.batch,
            lr=self.lr if self.lr is not None else method.default_lr,
            lr_rampup_kimg=self.lr_rampup_kimg
            if self.lr_rampup_kimg is not None
            else method.default_rampup_kimg,
            ema_halflife_kimg=self.ema_halflife_kimg,
            ema_decay=self.ema_decay,
            rampup=self.rampup,
            device=self.device,
            dtype=self.dtype,
            compile=self.compile,
        )


def quick_config(**overrides) -> DeepConfig:
    """--quick: the whole loop on the bundled digits on a CPU (3 iterations, a few minutes)."""
    # 16x16 digits and 1000 real images: one 18-step Heun sample of 1000 images takes about 20 s
    # on 2 cores at this size (4x more at 32x32).
    base = dict(
        data="digits",
        resolution=16,
        n=1000,
        net="tiny",
        iterations=3,
        kimg=12.0,
        init_kimg=60.0,
        batch=64,
        lr=2e-3,
        lr_rampup_kimg=2.0,
        ema_halflife_kimg=2.0,
        gen_batch=250,
    )
    if overrides.get("model") == "otcfm":
        # torchcfm's U-Net is 2.2x the tiny DDPM++ one and dopri5 at 1e-5 takes ~270 network
        # calls per batch once trained: 20 Euler steps (mean deviation 1.3/255 from dopri5 on the
        # quick model) and a shorter first fit keep the run under 10 minutes on 2 cores.
        base.update(ode_solver="euler", ode_steps=20, init_kimg=40.0)
    base.update(overrides)
    return DeepConfig(**base)


def net_config(cfg: DeepConfig, channels: int, resolution: int):
    """The network of the run: the paper's configuration by data set, or `tiny` for CPUs.

    EDM and DDPM use the DDPM++ U-Net (UNetConfig); OT-CFM uses torchcfm's U-Net (OTCFMNet).
    """
    name = cfg.net
    if name == "auto":
        paper = (resolution, channels) in ((32, 3), (64, 3)) and not (
            cfg.model == "otcfm" and resolution == 64
        )
        name = ("cifar10" if resolution == 32 else "ffhq64") if paper else "tiny"
    if cfg.model == "otcfm":
        if name == "ffhq64":
            raise UsageError(
                "OT-CFM has the paper's CIFAR-10 network only; use --net cifar10 or tiny"
            )
        net = OTCFMNet.tiny(resolution, channels) if name == "tiny" else OTCFMNet.cifar10()
    elif name == "tiny":
        net = UNetConfig.tiny(resolution, channels)
        if cfg.model == "edm" and cfg.augment_probability() > 0:  # the labels need an input
            net = replace(net, augment_dim=AUGMENT_DIM)
    else:
        net = UNetConfig.cifar10() if name == "cifar10" else UNetConfig.ffhq64()
        if cfg.model == "ddpm":  # the network predicts eps; no augmentation labels
            net = replace(net, augment_dim=0)
    levels = len(getattr(net, "channel_mult", ())) or 1
    factor = 2 ** (levels - 1)  # each level but the last halves the image
    if resolution % factor:
        raise UsageError(
            f"{cfg.data}: images of side {resolution}: the network halves the image "
            f"{levels - 1} times, so it needs a multiple of {factor}"
        )
    if (net.resolution, net.channels) != (resolution, channels):
        raise UsageError(
            f"network {name} is for {net.channels}x{net.resolution}x{net.resolution} images, "
            f"the data are {channels}x{resolution}x{resolution}"
        )
    return net


def validate_run(cfg: DeepConfig):
    """Check every option of a run and load what it needs, before its folder is written.

    Parameters
    ----------
    cfg : DeepConfig

    Returns
    -------
    tuple
        (the real images, n the number used, the data `Policy`, the network config: from
        `net_config`, or the one stored in the --init checkpoint).

    Raises
    ------
    UsageError
        One line naming the first bad option (model, network, lambda, sizes, the --init
        checkpoint's method and image size, augmentation, latents, snapshots, status lines).
    """
    from deep.data import load_images

    if cfg.model not in METHODS:
        raise UsageError(f"unknown model {cfg.model!r}; choose one of {', '.join(METHODS)}")
    if cfg.net not in NETS:
        raise UsageError(f"unknown network {cfg.net!r}; choose one of {', '.join(NETS)}")
    lam = check_lam(cfg.lam)
    check_n(cfg.iterations, "iterations", minimum=1)
    for name in ("kimg", "batch"):
        if not getattr(cfg, name) > 0:
            raise UsageError(f"{name} must be > 0, got {getattr(cfg, name)}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise UsageError(f"lr must be > 0, got {cfg.lr}")
    if cfg.init_kimg < 0:
        raise UsageError(f"init-kimg must be >= 0, got {cfg.init_kimg}")
    if cfg.init is None and cfg.init_kimg == 0:
        raise UsageError(
            "give --init CKPT or --init-kimg > 0 (the model fitted on real data at t = 0)"
        )
    check_run_options(cfg)
    data = load_images(cfg.data, resolution=cfg.resolution)
    n = cfg.n or len(data)
    if n > len(data):
        raise UsageError(f"--n {n} exceeds the {len(data)} images of the data set")
    check_n(n, "n")
    policy = Policy(cfg.policy, lam, cfg.n_fresh, cfg.subsample_size)
    net = net_config(cfg, data.channels, data.resolution)
    if cfg.init is not None:
        state = load_weights(cfg.init)
        if state.get("format") == FORMAT:
            if state.get("method", "edm") != cfg.model:
                raise UsageError(
                    f"checkpoint {Path(cfg.init).name} holds a {state.get('method')} model, not {cfg.model}"
                )
            stored = state["net_cfg"]
            if (stored["resolution"], stored["channels"]) != (data.resolution, data.channels):
                raise UsageError(
                    f"checkpoint {Path(cfg.init).name} is for {stored['channels']}x{stored['resolution']}"
                    f"x{stored['resolution']} images, the data are "
                    f"{data.channels}x{data.resolution}x{data.resolution}"
                )
            net = net_from_dict(cfg.model, stored)
    if cfg.model == "edm" and cfg.augment_probability() > 0 and net.augment_dim != AUGMENT_DIM:
        raise UsageError(
            f"--augment {cfg.augment_probability():g} needs a network with {AUGMENT_DIM} "
            f"augmentation inputs; the network of {Path(cfg.init).name} has {net.augment_dim}"
        )
    cfg.train_options()
    return data, n, policy, net


def check_run_options(cfg: DeepConfig) -> None:
    """UsageError for bad augmentation, latent, DDIM-spacing, snapshot and status options."""
    p = cfg.augment_probability()
    if not 0 <= p <= 1:
        raise UsageError(f"--augment must be in [0, 1], got {p:g}")
    if p > 0 and cfg.model != "edm":
        raise UsageError(
            f"--augment is EDM's (its network takes the augmentation labels); {cfg.model} "
            "trains without it: give --augment 0"
        )
    if cfg.latents not in LATENTS:
        raise UsageError(f"--latents must be one of {', '.join(LATENTS)}, got {cfg.latents!r}")
    if cfg.ddim_spacing not in SPACINGS:
        raise UsageError(
            f"--ddim-spacing must be one of {', '.join(SPACINGS)}, got {cfg.ddim_spacing!r}"
        )
    if cfg.snap_kimg is not None and not cfg.snap_kimg > 0:
        raise UsageError(f"--snap-kimg must be > 0, got {cfg.snap_kimg}")
    if not cfg.status_kimg > 0 or not cfg.status_sec >= 0:
        raise UsageError("--status-kimg must be > 0 and --status-sec >= 0")
