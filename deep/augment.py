"""EDM's non-leaking augmentation (Karras et al. 2022, "Elucidating the design space of
diffusion-based generative models", appendix on augmentation regularisation), re-implemented
from the paper's description.

Each training image is transformed at random and the parameters of its transform are fed to the
network as a conditioning vector (the augmentation labels); images are generated with all-zero
labels, i.e. the network is asked for untransformed images, so the augmentations do not leak into
the generated distribution. The transforms, as in the official CIFAR-10 and FFHQ runs:

- x-flip: a fair coin for every image (the official runs give it a probability multiplier of 1e8,
  so min(1, 1e8 P) = 1 whatever P > 0);
- y-flip, isotropic scaling, rotation, anisotropic scaling and translation: each applied
  independently with probability P (0.12 in the CIFAR-10 runs, 0.15 in the FFHQ command).

Labels, ``AUGMENT_DIM = 9`` columns in this order (the ``map_augment`` input of the official
DDPM++ networks, weight shape (128, 9)); all zero exactly when the transform is the identity:

====  ========================  ================================================================
col   label                     transform of the image content
====  ========================  ================================================================
0     f_x in {0, 1}             mirrored left-right
1     f_y in {0, 1}             mirrored upside down
2     w_s ~ N(0, 1)             magnified by 2^(0.2 w_s)
3, 4  cos a - 1, sin a          rotated counter-clockwise (as displayed) by a ~ U(-pi, pi)
5, 6  w_a cos r, w_a sin r      stretched by 2^(0.2 w_a) along the direction at angle r and
                                squeezed by the same factor across it; w_a ~ N(0, 1), r ~
                                U(-pi, pi) with probability 1/2, else r = 0
7, 8  w_x, w_y ~ N(0, 1)        moved right by 0.125 W w_x and down by 0.125 H w_y pixels
====  ========================  ================================================================

The geometric transforms compose as G = T A R S (scale first, translation last); the output
pixel at centred position p takes the input's value at G^-1 p, interpolated bicubically with
the image mirrored at its borders (torch's grid_sample, cubic convolution with a = -0.75: about
0.015 off a smooth picture of unit amplitude). The resampling filter is this module's choice
(the official pipeline resamples through a 2x wavelet-upsampled image); the labels, their distributions and
the transforms they name follow the official layout, so that official weights fine-tune with
the labels they were trained on. Images whose geometric transform is the identity are not
resampled: they keep their exact pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from stability.errors import UsageError

AUGMENT_DIM = 9
PAPER_AUGMENT = {"cifar10": 0.12, "ffhq": 0.15}  # the official runs' --augment


@dataclass(frozen=True)
class AugmentParams:
    """Parameters of one batch of transforms, each a float64 tensor of shape (N,).

    flip_x, flip_y in {0, 1}; scale = w_s; angle = a (radians); aniso = w_a; aniso_angle = r;
    shift_x, shift_y = w_x, w_y (in units of 0.125 of the image size). Zero everywhere is the
    identity.
    """

    flip_x: torch.Tensor
    flip_y: torch.Tensor
    scale: torch.Tensor
    angle: torch.Tensor
    aniso: torch.Tensor
    aniso_angle: torch.Tensor
    shift_x: torch.Tensor
    shift_y: torch.Tensor

    @staticmethod
    def identity(n: int) -> AugmentParams:
        """Parameters of n identity transforms (every field zero, float64 (n,))."""
        z = torch.zeros(n, dtype=torch.float64)
        return AugmentParams(*(z.clone() for _ in range(8)))

    def labels(self) -> torch.Tensor:
        """The (N, 9) float32 label matrix of the module docstring's table."""
        cols = [
            self.flip_x,
            self.flip_y,
            self.scale,
            self.angle.cos() - 1,
            self.angle.sin(),
            self.aniso * self.aniso_angle.cos(),
            self.aniso * self.aniso_angle.sin(),
            self.shift_x,
            self.shift_y,
        ]
        return torch.stack(cols, dim=1).to(torch.float32)

    def take(self, sl) -> AugmentParams:
        """The parameters of the images in slice ``sl`` (each field indexed by it)."""
        return AugmentParams(*(getattr(self, f)[sl] for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class AugmentPipe:
    """The augmentation of the module docstring with probability ``p``.

    Parameters
    ----------
    p : probability of each of y-flip, scaling, rotation, anisotropic scaling, translation
    xflip : probability multiplier of the x-flip (the official 1e8: a coin for every image)
    scale_std, aniso_std : log2 standard deviations of the scalings (0.2)
    translate_std : standard deviation of the translation, relative to the image size (0.125)
    """

    p: float
    xflip: float = 1e8
    scale_std: float = 0.2
    aniso_std: float = 0.2
    aniso_rotate_prob: float = 0.5
    translate_std: float = 0.125

    def __post_init__(self):
        if not 0 <= self.p <= 1:
            raise UsageError(f"augment probability must be in [0, 1], got {self.p}")

    def draw(self, gen: torch.Generator, n: int) -> AugmentParams:
        """Parameters for n images from `gen` (CPU draws, float64; a fixed number per image)."""

        def on(prob):
            return torch.rand(n, generator=gen, dtype=torch.float64) < min(1.0, prob)

        def coin():
            return torch.randint(0, 2, (n,), generator=gen).to(torch.float64)

        def gated(prob, values):
            return torch.where(on(prob), values, torch.zeros_like(values))

        p = self.p
        flip_x = gated(self.xflip * p, coin())
        flip_y = gated(p, coin())
        scale = gated(p, torch.randn(n, generator=gen, dtype=torch.float64))
        angle = gated(p, (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi)
        aniso = gated(p, torch.randn(n, generator=gen, dtype=torch.float64))
        r = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
        aniso_angle = gated(self.aniso_rotate_prob, r)
        shift = torch.randn(2, n, generator=gen, dtype=torch.float64)
        shift = torch.where(on(p)[None], shift, torch.zeros_like(shift))
        return AugmentParams(flip_x, flip_y, scale, angle, aniso, aniso_angle, shift[0], shift[1])

    def __call__(self, images: torch.Tensor, gen: torch.Generator, batch: int, sl: slice):
        """Augment the local slice `sl` of a global minibatch of `batch` images.

        images : (B_local, C, H, W) float; the parameters of all `batch` images are drawn from
        `gen` (identical on every process) and the slice's are applied. Returns (augmented
        images (B_local, C, H, W), labels (B_local, 9) float32).
        """
        params = self.draw(gen, batch).take(sl)
        return apply(images, params, self), params.labels().to(images.device)


def inverse_matrices(params: AugmentParams, size: tuple[int, int], pipe: AugmentPipe):
    """G^-1 of each image as a (N, 2, 3) float64 affine map of centred pixel coordinates
    (x to the right, y down, in pixels); see the module docstring for G = T A R S."""
    h, w = size
    n = len(params.scale)

    def rot(theta):  # rotation by theta in (x right, y down) coordinates
        c, s = theta.cos(), theta.sin()
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)

    def diag(a, b):
        zero = torch.zeros_like(a)
        return torch.stack([torch.stack([a, zero], -1), torch.stack([zero, b], -1)], -2)

    s = torch.exp2(params.scale * pipe.scale_std)
    sa = torch.exp2(params.aniso * pipe.aniso_std)
    r = params.aniso_angle
    # Content rotated counter-clockwise as displayed = rot(-a) with y pointing down.
    forward = (
        (
            rot(-r) @ diag(sa, 1 / sa) @ rot(r)  # A: stretch along angle r (counter-clockwise)
        )
        @ rot(-params.angle)
        @ diag(s, s)
    )
    inv = torch.linalg.inv(forward)
    t = torch.stack(
        [params.shift_x * pipe.translate_std * w, params.shift_y * pipe.translate_std * h], -1
    )
    out = torch.zeros(n, 2, 3, dtype=torch.float64)
    out[:, :, :2] = inv
    out[:, :, 2] = -(inv @ t[..., None])[..., 0]
    return out


def apply(images: torch.Tensor, params: AugmentParams, pipe: AugmentPipe) -> torch.Tensor:
    """The transforms `params` applied to images (N, C, H, W); see the module docstring."""
    n, _, h, w = images.shape
    dev = images.device
    out = torch.where(params.flip_x.to(dev).reshape(-1, 1, 1, 1) == 1, images.flip(3), images)
    out = torch.where(params.flip_y.to(dev).reshape(-1, 1, 1, 1) == 1, out.flip(2), out)
    moved = (
        (params.scale != 0)
        | (params.angle != 0)
        | (params.aniso != 0)
        | (params.shift_x != 0)
        | (params.shift_y != 0)
    )
    if not bool(moved.any()):
        return out
    idx = moved.nonzero().flatten()
    theta = inverse_matrices(params.take(idx), (h, w), pipe)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) - cy,
        torch.arange(w, dtype=torch.float64) - cx,
        indexing="ij",
    )
    p = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3)  # (H W, 3)
    q = torch.einsum("nij,pj->npi", theta, p)  # input positions, centred pixels
    # grid_sample with align_corners=True maps -1 and +1 to the centres of the border pixels.
    grid = torch.stack([q[..., 0] / max(cx, 0.5), q[..., 1] / max(cy, 0.5)], -1)
    grid = grid.reshape(len(idx), h, w, 2).to(dev, images.dtype)
    moved_images = F.grid_sample(
        out[idx.to(dev)], grid, mode="bicubic", padding_mode="reflection", align_corners=True
    )
    out = out.clone()
    out[idx.to(dev)] = moved_images
    return out


def paper_default(data_spec: str, model: str) -> float:
    """The augmentation probability of the paper's runs for a data spec: 0.12 for cifar10=,
    0.15 for ffhq= (EDM only; the OT-CFM and DDPM codes have no augmentation labels), else 0."""
    if model != "edm":
        return 0.0
    kind = str(data_spec).split("=", 1)[0].split(":", 1)[0]
    return PAPER_AUGMENT.get(kind, 0.0)
