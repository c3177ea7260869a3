"""A DDPM++ U-Net (Song et al. 2021, "Score-based generative modeling through SDEs"), as used by
EDM (Karras et al. 2022) for CIFAR-10 and FFHQ-64, re-implemented from the papers' descriptions.

Module and parameter names follow the layout of the official ``SongUNet`` (listed in
``shared/reference/edm_ddpmpp_state_dict.json``) so that official weights exported as a plain
state dict load with ``strict=True`` into ``EDMPrecond`` (see deep/edm.py and the README).

Architecture (DDPM++ "standard" encoder/decoder):
- noise conditioning: positional embedding of c_noise (sin/cos, endpoint frequencies), two
  linear layers with SiLU to a 4 x model_channels embedding; optional augmentation-label input
  (``map_augment``, no bias) added before them;
- encoder: a 3x3 conv, then per resolution level a downsampling residual block (after the first
  level) and ``num_blocks`` residual blocks, with self-attention at ``attn_resolutions``;
- decoder: two bottleneck blocks (the first with attention), then per level an upsampling block
  (after the lowest) and num_blocks + 1 blocks fed with the encoder's skip connections, and at
  the top a GroupNorm + 3x3 conv to the output channels;
- residual blocks: GroupNorm-SiLU-conv, an additive projection of the embedding, GroupNorm-SiLU-
  dropout-conv (zero-initialised), a 1x1 skip when shapes change, all scaled by sqrt(1/2);
  resampling by a separable [1, 1] filter (2x2 mean pooling / nearest upsampling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from stability.errors import UsageError


def _init(shape, mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise UsageError(f"unknown init mode {mode!r}")


class Linear(torch.nn.Module):
    """y = x W^T + b with weight (out, in) and bias (out,)."""

    def __init__(self, cin: int, cout: int, bias: bool = True, mode="kaiming_normal", scale=1.0):
        super().__init__()
        self.weight = torch.nn.Parameter(_init((cout, cin), mode, cin, cout) * scale)
        self.bias = torch.nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x):
        """x W^T + b in x's dtype; x (..., cin) -> (..., cout)."""
        x = x @ self.weight.to(x.dtype).t()
        return x + self.bias.to(x.dtype) if self.bias is not None else x


class Conv2d(torch.nn.Module):
    """A k x k convolution, optionally preceded by 2x up/down resampling with a separable filter.

    The resampling filter is a buffer named ``resample_filter`` (shape (1, 1, f, f)) registered
    only for resampling layers, as in the official layout. kernel = 0 means resampling only.
    """

    def __init__(
        self,
        cin,
        cout,
        kernel,
        bias=True,
        up=False,
        down=False,
        resample_filter=(1, 1),
        mode="kaiming_normal",
        scale=1.0,
    ):
        super().__init__()
        self.cin, self.cout, self.up, self.down = cin, cout, up, down
        fan_in, fan_out = cin * kernel * kernel, cout * kernel * kernel
        self.weight = (
            torch.nn.Parameter(_init((cout, cin, kernel, kernel), mode, fan_in, fan_out) * scale)
            if kernel
            else None
        )
        self.bias = torch.nn.Parameter(torch.zeros(cout)) if kernel and bias else None
        f = torch.as_tensor(resample_filter, dtype=torch.float32)
        f = torch.outer(f, f)[None, None] / f.sum().square()
        self.register_buffer("resample_filter", f if (up or down) else None)

    def forward(self, x):
        """Optional 2x up/down-sampling by the resample filter, then the convolution and bias;
        (N, cin, H, W) -> (N, cout, H', W').
        """
        f = self.resample_filter
        if f is not None:
            pad = (f.shape[-1] - 1) // 2
            taps = f.to(x.dtype).tile([self.cin, 1, 1, 1])
            if self.up:
                x = F.conv_transpose2d(x, taps * 4, groups=self.cin, stride=2, padding=pad)
            if self.down:
                x = F.conv2d(x, taps, groups=self.cin, stride=2, padding=pad)
        if self.weight is not None:
            x = F.conv2d(x, self.weight.to(x.dtype), padding=self.weight.shape[-1] // 2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


class GroupNorm(torch.nn.Module):
    """GroupNorm with min(32, channels/4) groups."""

    def __init__(self, channels: int, groups: int = 32, min_per_group: int = 4, eps: float = 1e-6):
        super().__init__()
        self.groups = min(groups, channels // min_per_group)
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.bias = torch.nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        """Group normalisation of x (N, C, H, W) with the learned scale and shift, in x's dtype."""
        return F.group_norm(
            x, self.groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps
        )


class UNetBlock(torch.nn.Module):
    """Residual block with optional 2x resampling and single-head self-attention."""

    def __init__(
        self,
        cin,
        cout,
        emb,
        up=False,
        down=False,
        attention=False,
        dropout=0.0,
        resample_filter=(1, 1),
    ):
        super().__init__()
        self.in_channels, self.out_channels = cin, cout
        self.dropout = dropout
        self.skip_scale = math.sqrt(0.5)
        zero = dict(mode="xavier_uniform", scale=1e-5)
        xavier = dict(mode="xavier_uniform")
        self.norm0 = GroupNorm(cin)
        self.conv0 = Conv2d(
            cin, cout, 3, up=up, down=down, resample_filter=resample_filter, **xavier
        )
        self.affine = Linear(emb, cout, **xavier)
        self.norm1 = GroupNorm(cout)
        self.conv1 = Conv2d(cout, cout, 3, **zero)
        self.skip = None
        if cout != cin or up or down:
            self.skip = Conv2d(
                cin, cout, 1, up=up, down=down, resample_filter=resample_filter, **xavier
            )
        self.attention = attention
        if attention:
            self.norm2 = GroupNorm(cout)
            self.qkv = Conv2d(cout, cout * 3, 1, mode="xavier_uniform", scale=math.sqrt(0.2))
            self.proj = Conv2d(cout, cout, 1, **zero)

    def forward(self, x, emb):
        """DDPM++ residual block: (skip(x) + conv1(silu(norm1(h + A emb)))) * skip_scale,
        h = conv0(silu(norm0(x))),
        then self-attention when enabled; x (N, cin, H, W), emb (N, E) -> (N, cout, H', W').
        """
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        x = F.silu(self.norm1(x + self.affine(emb)[:, :, None, None].to(x.dtype)))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.attention:
            n, c, h, w = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(n, c, 3, h * w).unbind(2)
            weights = torch.softmax(torch.einsum("ncq,nck->nqk", q, k / math.sqrt(c)), dim=2)
            a = torch.einsum("nqk,nck->ncq", weights, v)
            x = (self.proj(a.reshape(n, c, h, w)) + x) * self.skip_scale
        return x


class PositionalEmbedding(torch.nn.Module):
    """[cos(x f_i), sin(x f_i)] with f_i = (1/10000)^(i/(C/2 - 1)), i < C/2 (endpoint)."""

    def __init__(self, channels: int, max_positions: int = 10000):
        super().__init__()
        self.channels, self.max_positions = channels, max_positions

    def forward(self, x):
        """Sinusoidal embedding [cos(x f_i), sin(x f_i)], f_i = max_positions^(-i / (half - 1)).

        Shape (N,) -> (N, channels).
        """
        half = self.channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (half - 1)
        freqs = (1 / self.max_positions) ** freqs
        x = torch.outer(x.to(torch.float32), freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


@dataclass(frozen=True)
class UNetConfig:
    """Size of the U-Net. ``cifar10()`` and ``ffhq64()`` are the paper's configurations."""

    resolution: int = 32
    channels: int = 3
    model_channels: int = 128
    channel_mult: tuple = (2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: tuple = (16,)
    dropout: float = 0.13
    augment_dim: int = 9
    extra: dict = field(default_factory=dict)

    @staticmethod
    def cifar10() -> UNetConfig:
        """EDM's ddpmpp CIFAR-10 network (56M parameters)."""
        return UNetConfig(32, 3, 128, (2, 2, 2), 4, 4, (16,), 0.13, 9)

    @staticmethod
    def ffhq64() -> UNetConfig:
        """EDM's ddpmpp FFHQ-64 network (62M parameters)."""
        return UNetConfig(64, 3, 128, (1, 2, 2, 2), 4, 4, (16,), 0.05, 9)

    @staticmethod
    def tiny(resolution: int = 32, channels: int = 1) -> UNetConfig:
        """A CPU-sized network with the same layout (about 0.2M parameters at 32x32)."""
        return UNetConfig(resolution, channels, 16, (1, 2, 2), 4, 1, (resolution // 4,), 0.0, 0)


class SongUNet(torch.nn.Module):
    """The DDPM++ U-Net F(x, c_noise) (see the module docstring); x (N, C, H, W), noise (N,)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        emb = cfg.model_channels * cfg.channel_mult_emb
        noise_channels = cfg.model_channels
        xavier = dict(mode="xavier_uniform")
        self.map_noise = PositionalEmbedding(noise_channels)
        self.map_augment = (
            Linear(cfg.augment_dim, noise_channels, bias=False, **xavier)
            if cfg.augment_dim
            else None
        )
        self.map_layer0 = Linear(noise_channels, emb, **xavier)
        self.map_layer1 = Linear(emb, emb, **xavier)

        self.enc = torch.nn.ModuleDict()
        cout = cfg.channels
        for level, mult in enumerate(cfg.channel_mult):
            res = cfg.resolution >> level
            if level == 0:
                cin, cout = cout, cfg.model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3, **xavier)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(
                    cout, cout, emb, down=True, dropout=cfg.dropout
                )
            for idx in range(cfg.num_blocks):
                cin, cout = cout, cfg.model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, emb, attention=res in cfg.attn_resolutions, dropout=cfg.dropout
                )
        skips = [b.out_channels if isinstance(b, UNetBlock) else b.cout for b in self.enc.values()]
        self.dec = torch.nn.ModuleDict()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            res = cfg.resolution >> level
            if level == len(cfg.channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(
                    cout, cout, emb, attention=True, dropout=cfg.dropout
                )
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, emb, dropout=cfg.dropout)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(
                    cout, cout, emb, up=True, dropout=cfg.dropout
                )
            for idx in range(cfg.num_blocks + 1):
                cin, cout = cout + skips.pop(), cfg.model_channels * mult
                attn = idx == cfg.num_blocks and res in cfg.attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, emb, attention=attn, dropout=cfg.dropout
                )
            if level == 0:
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(
                    cout, cfg.channels, 3, mode="xavier_uniform", scale=1e-5
                )

    def forward(self, x, noise_labels, augment_labels=None):
        """The DDPM++ U-Net F(x; c_noise) of Song et al. 2021 in the EDM layout.

        x (N, C, H, W), noise_labels (N,), augment_labels (N, 9) or None -> (N, C, H, W).
        """
        emb = self.map_noise(noise_labels)
        # The official layout feeds [sin, cos]: swap the two halves of [cos, sin].
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(emb.shape)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        out = None
        for name, block in self.dec.items():
            if name.endswith("aux_norm"):
                out = block(x)
            elif name.endswith("aux_conv"):
                out = block(F.silu(out))
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return out


def count_parameters(module: torch.nn.Module) -> int:
    """Number of scalar parameters of ``module`` (every tensor of ``module.parameters()``)."""
    return int(sum(p.numel() for p in module.parameters()))


def official_layout(name: str) -> dict:
    """Names and shapes of the official EDM network `name` ("cifar10-32x32-uncond-ddpmpp" or
    "ffhq-64x64-uncond-ddpmpp"), measured from the official code and shipped as data in
    deep/reference/ (names and shapes only)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent / "reference" / "edm_ddpmpp_state_dict.json"
    data = json.loads(path.read_text())
    return {k: tuple(v) for k, v in data[name]["state_dict"].items()}
