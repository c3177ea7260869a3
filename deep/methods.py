"""The three image models of the paper's experiments, as loss + sampler around a network.

- ``edm``: EDM (Karras et al. 2022), see deep/edm.py: preconditioned DDPM++ network, EDM loss,
  18-step Heun sampler.
- ``otcfm``: OT conditional flow matching (Tong et al. 2023) with torchcfm: the paper's CIFAR-10
  network ``torchcfm.models.unet.UNetModelWrapper`` (128 channels, multipliers [1, 2, 2, 2], 2
  residual blocks, 4 heads of 64 channels, attention at 16x16, dropout 0.1), sigma = 0, the
  exact minibatch OT coupling of torchcfm's ``ExactOptimalTransportConditionalFlowMatcher``
  (the exact plan of the squared Euclidean cost, as POT's network simplex finds it, here by the
  exact assignment solver of simulations.assignment; pairs drawn from the plan with
  replacement), gradient clipping at 1, an EMA with decay 0.9999 per step, and samples by
  integrating dx/dt = v(t, x) from N(0, I) with torchdiffeq (dopri5, tolerances configurable,
  or Euler).
- ``ddpm``: DDPM (Ho et al. 2020): linear beta schedule 1e-4..0.02 over T = 1000 steps, the
  simple epsilon-prediction loss, DDIM sampling (Song et al. 2021, eta = 0 by default) for the
  experiments of appendix G.3 over a sub-sequence of timesteps spaced by one of diffusers'
  ``timestep_spacing`` conventions (see ``ddim_timesteps``); the network is this project's
  DDPM++ U-Net fed with the timestep (ddpm-torch's own network is not reproduced).

Every sampler starts from the per-seed latents of deep.edm.image_noise (float32 draws of one
generator per seed, as the official EDM generator; ``latents="float64"`` for the earlier
convention).

Every method draws its randomness for a training step from one generator for the global
minibatch (identical on every process), then keeps its slice ``sl``: under DDP the processes
train on disjoint slices of the same batch the single-process run would see.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from deep.augment import AUGMENT_DIM, AugmentPipe
from deep.edm import LATENTS, EDMLoss, EDMPrecond, SamplerConfig, heun_sample, image_noise
from deep.unet import SongUNet, UNetConfig
from stability.coupling import exact_ot_pairs
from stability.errors import UsageError

METHODS = ("edm", "otcfm", "ddpm")
SPACINGS = ("leading", "trailing", "linspace")


@dataclass(frozen=True)
class OTCFMNet:
    """torchcfm UNetModelWrapper settings (dim = (C, H, W))."""

    channels: int = 3
    resolution: int = 32
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple = (1, 2, 2, 2)
    num_heads: int = 4
    num_head_channels: int = 64
    attention_resolutions: str = "16"
    dropout: float = 0.1

    @staticmethod
    def cifar10() -> OTCFMNet:
        """The torchcfm CIFAR-10 network the paper fine-tunes (about 36M parameters)."""
        return OTCFMNet()

    @staticmethod
    def tiny(resolution: int = 16, channels: int = 1) -> OTCFMNet:
        """A small torchcfm U-Net for tests and CPU runs (32 channels, one residual block).

        Parameters
        ----------
        resolution : int
            Image side H = W; attention is placed at resolution // 2.
        channels : int
            Image channels C.

        Returns
        -------
        OTCFMNet
            The settings, dropout 0.
        """
        return OTCFMNet(channels, resolution, 32, 1, (1, 2), 1, -1, str(resolution // 2), 0.0)


class Method:
    """Loss and sampler of one model family (see the module docstring)."""

    name = ""
    ema_decay: float | None = None  # per-step EMA decay; None: EDM's half-life in images
    grad_clip: float | None = None
    default_lr = 1e-3
    default_rampup_kimg = 10000.0
    latents = "float32"  # dtype of the per-seed latent draws (deep.edm.image_noise)

    def _set_latents(self, latents: str) -> None:
        if latents not in LATENTS:
            raise UsageError(f"latents must be one of {', '.join(LATENTS)}, got {latents!r}")
        self.latents = latents

    def build(self, cfg) -> torch.nn.Module:
        """The network this method trains, from its configuration ``cfg``.

        Parameters
        ----------
        cfg : UNetConfig or OTCFMNet
            Network settings (channels, resolution, widths).

        Returns
        -------
        torch.nn.Module
            The untrained network.
        """
        raise NotImplementedError

    def shape(self, cfg) -> tuple[int, int, int]:
        """The image shape (C, H, W) that the network configuration ``cfg`` works on."""
        return (cfg.channels, cfg.resolution, cfg.resolution)

    def loss(self, net, x, gen: torch.Generator, batch: int, sl: slice) -> torch.Tensor:
        """Per-image loss of the local slice, shape (len(x),); x (B_local, C, H, W) in [-1, 1]."""
        raise NotImplementedError

    def sample(self, net, seeds, shape, device, dtype) -> torch.Tensor:
        """float64 images (len(seeds), C, H, W) around [-1, 1], one seed per image."""
        raise NotImplementedError

    def options(self) -> dict:
        """The method's settings as a JSON-able dict, recorded in the run's config.json."""
        return {}


class EDMMethod(Method):
    """EDM with the Heun sampler `sampler` and, when ``augment`` > 0, EDM's non-leaking
    augmentation with that probability (deep.augment; the network needs augment_dim = 9)."""

    name = "edm"

    def __init__(
        self, sampler: SamplerConfig | None = None, augment: float = 0.0, latents: str = "float32"
    ):
        self.sampler = sampler or SamplerConfig()
        self.augment = float(augment)
        self.pipe = AugmentPipe(self.augment) if self.augment > 0 else None
        self._set_latents(latents)
        self._loss = EDMLoss()

    def build(self, cfg: UNetConfig):
        """EDM's preconditioned network D(x; sigma) around the DDPM++ U-Net of ``cfg``.

        Raises UsageError when augmentation is on and the network has no augmentation inputs.
        """
        if self.pipe is not None and cfg.augment_dim != AUGMENT_DIM:
            raise UsageError(
                f"--augment needs a network with {AUGMENT_DIM} augmentation inputs; "
                f"this one has {cfg.augment_dim}"
            )
        return EDMPrecond(cfg)

    def loss(self, net, x, gen, batch, sl):
        """EDM loss lambda(sigma) ||D(y + n; sigma) - y||^2 per image, shape (len(x),).

        Karras et al. 2022, eq. 8 and Table 1: ln sigma ~ N(P_mean, P_std^2), n ~ N(0, sigma^2 I).
        """
        labels = None
        if self.pipe is not None:  # drawn first, so that P = 0 leaves the stream as it was
            x, labels = self.pipe(x, gen, batch, sl)
        normal = torch.randn(batch, generator=gen)[sl].to(x.device)
        noise = torch.randn((batch, *x.shape[1:]), generator=gen)[sl].to(x.device)
        return self._loss(net, x, normal, noise, labels)

    def sample(self, net, seeds, shape, device, dtype):
        """Heun sampler (Karras et al. 2022, Algorithm 2) from per-seed latents.

        Returns images of shape (len(seeds), C, H, W).
        """
        return heun_sample(net, seeds, shape, self.sampler, device, dtype, self.latents)

    def options(self):
        """Sampler settings, augmentation probability and latent dtype, for config.json."""
        return {**asdict(self.sampler), "augment": self.augment, "latents": self.latents}


def _ot_pairs(x0: np.ndarray, x1: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs drawn with replacement from the exact OT plan of flattened minibatches (B, D)."""
    i, j = exact_ot_pairs(x0, x1, u)
    return i, j


class OTCFMMethod(Method):
    """OT conditional flow matching (Tong et al. 2023) with the torchcfm CIFAR-10 network.

    The loss regresses v(t, x_t) on u_t = x_1 - x_0 along x_t = (1 - t) x_0 + t x_1 + sigma eps,
    with x_0 ~ N(0, I) and the images x_1 paired by the exact minibatch OT plan (Tong et al.
    2023); sampling integrates dx/dt = v(t, x) from t = 0 to 1.

    Parameters
    ----------
    sigma : float
        Width of the Gaussian probability path (0 in the paper).
    solver : {"dopri5", "euler"}
        ODE solver of the sampler.
    tol : float
        rtol = atol of dopri5.
    euler_steps : int
        Number of Euler steps on [0, 1].
    latents : str
        dtype of the per-seed latent draws (deep.edm.LATENTS).
    """

    name = "otcfm"
    ema_decay = 0.9999
    grad_clip = 1.0
    default_lr = 2e-4
    default_rampup_kimg = 640.0  # torchcfm's CIFAR-10 warm-up: 5000 steps of 128 images

    def __init__(
        self,
        sigma: float = 0.0,
        solver: str = "dopri5",
        tol: float = 1e-5,
        euler_steps: int = 100,
        latents: str = "float32",
    ):
        if solver not in ("dopri5", "euler"):
            raise UsageError(f"unknown ODE solver {solver!r}; choose dopri5 or euler")
        self._set_latents(latents)
        from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher

        self.sigma, self.solver, self.tol, self.euler_steps = sigma, solver, tol, euler_steps
        self.fm = ExactOptimalTransportConditionalFlowMatcher(sigma=sigma)

    def build(self, cfg: OTCFMNet):
        """torchcfm's ``UNetModelWrapper`` v(t, x) with the settings of ``cfg``."""
        from torchcfm.models.unet.unet import UNetModelWrapper

        return UNetModelWrapper(
            dim=(cfg.channels, cfg.resolution, cfg.resolution),
            num_channels=cfg.num_channels,
            num_res_blocks=cfg.num_res_blocks,
            channel_mult=list(cfg.channel_mult),
            num_heads=cfg.num_heads,
            num_head_channels=cfg.num_head_channels,
            attention_resolutions=cfg.attention_resolutions,
            dropout=cfg.dropout,
        )

    def loss(self, net, x, gen, batch, sl):
        """Per-image flow-matching loss ||v(t, x_t) - (x_1 - x_0)||^2 / D.

        x_0 ~ N(0, I) is paired to
        the images x (B_local, C, H, W) by the exact minibatch OT plan; shape (B_local,).
        """
        # Under DDP the OT plan couples each process's slice only, as torchcfm's multi-GPU
        # training does: the minibatch OT is then over batch / W images.
        local = x.shape[0]
        x0_all = torch.randn((batch, *x.shape[1:]), generator=gen)
        t_all = torch.rand(batch, generator=gen)
        eps_all = torch.randn((batch, *x.shape[1:]), generator=gen)
        u_all = torch.rand(batch, generator=gen)
        x0, t, eps, u = (
            x0_all[sl].to(x.device),
            t_all[sl].to(x.device),
            eps_all[sl].to(x.device),
            u_all[sl],
        )
        i, j = _ot_pairs(
            x0.flatten(1).double().cpu().numpy(), x.flatten(1).double().cpu().numpy(), u.numpy()
        )
        x0, x1 = x0[torch.from_numpy(i)], x[torch.from_numpy(j)]
        xt = self.fm.sample_xt(x0, x1, t, eps)
        ut = self.fm.compute_conditional_flow(x0, x1, t, xt)
        vt = net(t, xt)
        return ((vt - ut) ** 2).reshape(local, -1).mean(1)

    @torch.no_grad()
    def sample(self, net, seeds, shape, device, dtype):
        """x(1) of dx/dt = v(t, x) from x(0) = the per-seed latents.

        Returns float64 images (len(seeds), C, H, W), clamped to [-1, 1].
        """
        from torchdiffeq import odeint

        x0 = image_noise(seeds, shape, 1, self.latents, device)[0].to(device, dtype)

        def velocity(t, x):
            return net(t.expand(x.shape[0]).to(dtype), x)

        span = torch.tensor([0.0, 1.0], device=device, dtype=dtype)
        if self.solver == "euler":
            out = odeint(
                velocity, x0, span, method="euler", options={"step_size": 1.0 / self.euler_steps}
            )
        else:
            out = odeint(velocity, x0, span, method="dopri5", rtol=self.tol, atol=self.tol)
        return out[-1].clamp(-1, 1).double()

    def options(self):
        """Flow-matching width, ODE solver settings and latent dtype, for config.json."""
        return {
            "sigma": self.sigma,
            "solver": self.solver,
            "tol": self.tol,
            "euler_steps": self.euler_steps,
            "latents": self.latents,
        }


class _DDPMNet(torch.nn.Module):
    """eps(x_t, t) with this project's U-Net; t enters as the noise label."""

    def __init__(self, cfg: UNetConfig, steps: int):
        super().__init__()
        self.model = SongUNet(cfg)
        self.steps = steps

    def forward(self, x, t):
        # The positional embedding expects values of order 1..10^3: the timestep itself, as in
        # Ho et al.'s sinusoidal timestep embedding.
        return self.model(x, t.to(torch.float32))


def ddim_timesteps(train_steps: int, steps: int, spacing: str = "leading") -> np.ndarray:
    """The DDIM sub-sequence tau_S > ... > tau_1 of {0, ..., T - 1}, shape (S,), descending.

    diffusers' ``DDIMScheduler.set_timesteps`` conventions (Lin et al. 2024, "Common diffusion
    noise schedules and sample steps are flawed", Table 2), with T = train_steps, S = steps:

    - ``leading``: k floor(T / S), k = 0..S-1 (diffusers' steps_offset = 0); the "uniform"
      skip of the DDIM paper's code and ddpm-torch's ``linear`` selection schedule, which the
      paper's DDPM experiments sampled with: the default here;
    - ``trailing``: round(T - k T / S) - 1, k = 0..S-1: starts at the last training step T - 1;
    - ``linspace``: round(linspace(0, T - 1, S)).
    """
    if spacing not in SPACINGS:
        raise UsageError(f"ddim spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if not 1 <= steps <= train_steps:
        raise UsageError(f"ddim steps must be in [1, {train_steps}], got {steps}")
    if spacing == "leading":
        ts = np.arange(steps) * (train_steps // steps)
    elif spacing == "trailing":
        ts = np.round(np.arange(train_steps, 0, -train_steps / steps)).astype(np.int64) - 1
    else:
        ts = np.linspace(0, train_steps - 1, steps).round()
    return np.sort(ts.astype(np.int64))[::-1].copy()


class DDPMMethod(Method):
    """DDPM (Ho et al. 2020) trained with the simple loss and sampled with DDIM (Song et al. 2021).

    Parameters
    ----------
    steps : int
        Number T of diffusion steps; beta_t is linear from ``beta_start`` to ``beta_end``.
    beta_start, beta_end : float
        Ends of the linear beta schedule.
    ddim_steps : int
        Number S of DDIM sampling steps.
    eta : float
        DDIM stochasticity (0: deterministic).
    clip_denoised : bool
        Clamp the predicted clean image x0_hat to [-1, 1] at each step.
    spacing : {"leading", "trailing", "linspace"}
        DDIM timestep spacing (see ``ddim_timesteps``).
    latents : str
        dtype of the per-seed latent draws (deep.edm.LATENTS).
    """

    name = "ddpm"
    default_lr = 2e-4
    default_rampup_kimg = 640.0

    def __init__(
        self,
        steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        ddim_steps: int = 100,
        eta: float = 0.0,
        clip_denoised: bool = True,
        spacing: str = "leading",
        latents: str = "float32",
    ):
        self.timesteps = ddim_timesteps(steps, ddim_steps, spacing)
        self.steps, self.ddim_steps, self.eta, self.spacing = steps, ddim_steps, eta, spacing
        self.clip_denoised = bool(clip_denoised)
        self.beta_start, self.beta_end = beta_start, beta_end
        self._set_latents(latents)
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        self.alpha_bar = torch.cumprod(1 - betas, 0)

    def build(self, cfg: UNetConfig):
        """The noise predictor eps(x_t, t) on this project's U-Net with the settings of ``cfg``."""
        return _DDPMNet(cfg, self.steps)

    def loss(self, net, x, gen, batch, sl):
        """Simple loss ||eps - eps_theta(sqrt(ab_t) x + sqrt(1 - ab_t) eps, t)||^2 / D per image
        (Ho et al. 2020, eq. 14), t uniform on {0, ..., T - 1};
        x (B_local, C, H, W), returns (B_local,).
        """
        t = torch.randint(0, self.steps, (batch,), generator=gen)[sl]
        eps = torch.randn((batch, *x.shape[1:]), generator=gen)[sl].to(x.device)
        ab = self.alpha_bar[t].to(x.device, torch.float32).reshape(-1, 1, 1, 1)
        xt = ab.sqrt() * x + (1 - ab).sqrt() * eps
        pred = net(xt, t.to(x.device))
        return ((pred - eps) ** 2).reshape(x.shape[0], -1).mean(1)

    @torch.no_grad()
    def sample(self, net, seeds, shape, device, dtype):
        """DDIM: x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - s^2) eps_hat + s z.

        Song et al. 2021 eq (12) over the sub-sequence ``self.timesteps`` (ddim_timesteps): the
        step from tau_i goes to tau_{i-1}, the next listed timestep, and the last one to
        ab_prev = 1 (the clean image). This equals diffusers' DDIMScheduler (set_alpha_to_one)
        for ``leading``, and for ``trailing`` when S divides T; diffusers' step() instead goes
        to t - T // S, which is off the list for ``linspace`` (diffusers issue #12633).
        With clip_denoised (the default, as in Ho et al.'s and ddpm-torch's samplers) x0_hat is
        clamped to the data range [-1, 1] and eps_hat re-derived from it, so that the
        1/sqrt(ab) amplification of the network's error at high noise cannot throw a sample out
        of range for good.
        seeds: N ints; shape: (C, H, W); returns (N, C, H, W) in [-1, 1].
        """
        ts = self.timesteps
        noises = image_noise(
            seeds, shape, 1 + (len(ts) if self.eta > 0 else 0), self.latents, device
        )
        x = noises[0].to(device)
        for k, t in enumerate(ts):
            ab = float(self.alpha_bar[t])
            ab_prev = float(self.alpha_bar[ts[k + 1]]) if k + 1 < len(ts) else 1.0
            eps = net(x.to(dtype), torch.full((x.shape[0],), int(t), device=device)).double()
            x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
            if self.clip_denoised:
                x0 = x0.clamp(-1, 1)
                eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
            s = (
                self.eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
                if k + 1 < len(ts)
                else 0.0
            )
            x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - s * s, 0.0)) * eps
            if s > 0:
                x = x + s * noises[1 + k].to(device)
        return x.clamp(-1, 1)

    def options(self):
        """Beta schedule, DDIM settings and latent dtype, for config.json."""
        return {
            "steps": self.steps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "ddim_steps": self.ddim_steps,
            "eta": self.eta,
            "clip_denoised": self.clip_denoised,
            "spacing": self.spacing,
            "latents": self.latents,
        }


def make_method(name: str, **options) -> Method:
    """The method `name` with its options (sampler settings; EDM also ``augment`` and
    ``latents`` beside the SamplerConfig fields)."""
    if name == "edm":
        extra = {k: options.pop(k) for k in ("augment", "latents") if k in options}
        return EDMMethod(SamplerConfig(**options) if options else None, **extra)
    if name == "otcfm":
        return OTCFMMethod(**options)
    if name == "ddpm":
        return DDPMMethod(**options)
    raise UsageError(f"unknown model {name!r}; choose one of {', '.join(METHODS)}")


def net_to_dict(cfg) -> dict:
    """The network configuration dataclass ``cfg`` as a JSON-able dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def net_from_dict(method: str, d: dict):
    """Inverse of ``net_to_dict``: an OTCFMNet for ``method == "otcfm"``, else a UNetConfig."""
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return OTCFMNet(**d) if method == "otcfm" else UNetConfig(**d)
