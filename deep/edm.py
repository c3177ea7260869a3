"""EDM (Karras et al. 2022, "Elucidating the design space of diffusion-based generative
models"): preconditioning, training loss and the Heun sampler, from the paper's equations.

Preconditioning (Table 1, "EDM" column), with sigma_data = 0.5:
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out  = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4
    D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)
Loss (eq 8 with Table 1): ln sigma ~ N(P_mean, P_std^2), P_mean = -1.2, P_std = 1.2,
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2,
    L = E[lambda(sigma) ||D(y + n; sigma) - y||^2], n ~ N(0, sigma^2 I).
Sampler (Algorithm 2): time steps
    t_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, t_N = 0,
with N = 18, sigma_min = 0.002, sigma_max = 80, rho = 7; an Euler step followed by a 2nd-order
(Heun) correction except on the last step; optional stochasticity S_churn, S_tmin, S_tmax,
S_noise. Each image has its own seed, so an image does not depend on the batch it is drawn in.

Latents as the official generator draws them: one ``torch.Generator`` per image, seeded with the
image's seed, on the sampling device; the latent is its first draw, float32 of shape (C, H, W),
scaled by t_0 in float64; the stochastic sampler's noise at step i is the stream's next draw,
float64 (drawn at every step, as the official sampler does, so that step i's noise does not
depend on S_tmin/S_tmax). The same network and seed (below 2^32) then give the same image as the
official sampler on the same kind of device. ``latents="float64"`` draws the latent in float64
too (this toolkit's earlier convention, kept to reproduce earlier runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deep.unet import SongUNet, UNetConfig
from stability.errors import UsageError

SIGMA_DATA = 0.5


class EDMPrecond(torch.nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) around a SongUNet named ``model``.

    Parameters
    ----------
    cfg : UNetConfig of the network F
    """

    def __init__(self, cfg: UNetConfig, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.cfg = cfg
        self.sigma_data = sigma_data
        self.model = SongUNet(cfg)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, augment_labels=None) -> torch.Tensor:
        """x: (N, C, H, W), sigma: (N,) or scalar, augment_labels: (N, 9) or None (all zero)
        -> denoised (N, C, H, W)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        f = self.model((c_in * x).to(x.dtype), c_noise.flatten(), augment_labels)
        return c_skip * x + c_out * f.to(torch.float32)


@dataclass(frozen=True)
class EDMLoss:
    """The EDM training loss (eq 8, Table 1) with P_mean = -1.2, P_std = 1.2."""

    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = SIGMA_DATA

    def __call__(
        self,
        net: EDMPrecond,
        images: torch.Tensor,
        normal: torch.Tensor,
        noise: torch.Tensor,
        augment_labels: torch.Tensor | None = None,
    ):
        """Per-image loss, summed over pixels (as EDM's training loop scales it), shape (N,).

        images: (N, C, H, W) in [-1, 1] (already augmented, if at all); normal: (N,) standard
        normal draws for ln sigma; noise: (N, C, H, W) standard normal draws for n (passed in so
        that the randomness comes from the caller's per-image streams); augment_labels: (N, 9)
        labels of the augmentation (deep.augment), given to the network with the noisy images.
        """
        sigma = (normal * self.p_std + self.p_mean).exp().reshape(-1, 1, 1, 1)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        if augment_labels is None:
            denoised = net(images + noise * sigma, sigma.flatten())
        else:
            denoised = net(images + noise * sigma, sigma.flatten(), augment_labels)
        return (weight * (denoised - images) ** 2).flatten(1).sum(1)


@dataclass(frozen=True)
class SamplerConfig:
    """Heun sampler settings (Algorithm 2 of EDM; S_churn = 0 is the deterministic sampler)."""

    steps: int = 18
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def time_steps(self) -> np.ndarray:
        """t_0 > ... > t_{N-1} > t_N = 0, shape (N + 1,)."""
        i = np.arange(self.steps, dtype=np.float64)
        a, b = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        t = (a + i / (self.steps - 1) * (b - a)) ** self.rho
        return np.append(t, 0.0)


LATENTS = ("float32", "float64")


def image_noise(seeds, shape, draws: int, latents: str = "float32", device="cpu") -> list:
    """Per-image standard normal tensors, as the official generator draws them.

    Parameters
    ----------
    seeds : sequence of N ints, one per image
    shape : (C, H, W)
    draws : number of tensors per image: the latent, then the sampler's per-step noise
    latents : "float32" (the official latents) or "float64": the dtype of the first draw; the
        later draws are float64 (the official sampler's noise, drawn like its float64 state)
    device : where the generators live and the numbers are drawn (the sampling device)

    Returns
    -------
    list of `draws` float64 tensors of shape (N, C, H, W); image i's numbers are those of a
    fresh torch.Generator seeded with seeds[i] and depend on nothing else.
    """
    if latents not in LATENTS:
        raise UsageError(f"latents must be one of {', '.join(LATENTS)}, got {latents!r}")
    first = torch.float32 if latents == "float32" else torch.float64
    gens = [torch.Generator(device).manual_seed(int(s)) for s in seeds]
    out = []
    for k in range(draws):
        dtype = first if k == 0 else torch.float64
        out.append(
            torch.stack(
                [torch.randn(shape, generator=g, dtype=dtype, device=device) for g in gens]
            ).to(torch.float64)
        )
    return out


@torch.no_grad()
def heun_sample(
    net,
    seeds,
    shape,
    cfg: SamplerConfig | None = None,
    device="cpu",
    dtype=torch.float32,
    latents: str = "float32",
) -> torch.Tensor:
    """Images D-sampled by EDM's Algorithm 2 for the given per-image seeds.

    net : a denoiser D(x, sigma); seeds : list of ints (one image each); shape : (C, H, W);
    latents : dtype of the per-seed latent draw (see the module docstring).
    Returns float64 images of shape (len(seeds), *shape) (values around [-1, 1]).
    """
    cfg = cfg or SamplerConfig()
    t = torch.as_tensor(cfg.time_steps(), dtype=torch.float64)
    stochastic = cfg.s_churn > 0
    draws = 1 + (cfg.steps if stochastic else 0)
    noises = image_noise(seeds, shape, draws, latents, device)
    x = noises[0].to(device) * t[0]
    gamma_max = min(cfg.s_churn / cfg.steps, math.sqrt(2) - 1)

    def denoise(x, sigma):
        s = torch.full((x.shape[0],), float(sigma), device=device)
        return net(x.to(dtype), s).to(torch.float64)

    for i in range(cfg.steps):
        t_cur, t_next = float(t[i]), float(t[i + 1])
        gamma = gamma_max if stochastic and cfg.s_tmin <= t_cur <= cfg.s_tmax else 0.0
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            eps = noises[1 + i].to(device)
            x = x + math.sqrt(t_hat**2 - t_cur**2) * cfg.s_noise * eps
        d = (x - denoise(x, t_hat)) / t_hat
        x_next = x + (t_next - t_hat) * d
        if i < cfg.steps - 1:
            d2 = (x_next - denoise(x_next, t_next)) / t_next
            x_next = x + (t_next - t_hat) * (0.5 * d + 0.5 * d2)
        x = x_next
    return x


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float images (N, C, H, W) -> uint8 (N, C, H, W), rounded and clipped."""
    return (images * 127.5 + 128).clip(0, 255).to(torch.uint8).cpu().numpy()
