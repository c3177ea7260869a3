"""The Inception-v3 of FID (the 2015-12-05 TensorFlow graph), built from a local weights file.

The network is laid out as pytorch-fid's port (torchvision's Inception3 names, 1008 classes,
BatchNorm eps 1e-3, TensorFlow's pooling), so that its ``pt_inception-2015-12-05-6726825d.pth``
loads with strict=True; nothing is ever downloaded. Its 2048-d pool3 features are those of FID
(Heusel et al. 2017) and of improved precision/recall (Kynkaanniemi et al. 2019).

Tensors below are (N, C, H, W), float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deep.features.extractor import FeatureExtractor
from stability.errors import UsageError

__all__ = ["INCEPTION_DIM", "InceptionV3FID", "inception_extractor", "load_strict"]

INCEPTION_DIM = 2048
INCEPTION_CLASSES = 1008  # the 2015-12-05 TensorFlow graph has 1008 outputs, not 1000
INCEPTION_SIZE = 299


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as TensorFlow's graph), ReLU."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        """relu(batchnorm(conv(x))); (N, cin, H, W) -> (N, cout, H', W')."""
        return F.relu(self.bn(self.conv(x)))


def avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 1, that leaves the zero padding out of the mean (TensorFlow)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _chain(module: nn.Module, prefix: str, count: int, x: torch.Tensor) -> torch.Tensor:
    """Apply module.{prefix}1 .. module.{prefix}{count} in order."""
    for i in range(1, count + 1):
        x = getattr(module, f"{prefix}{i}")(x)
    return x


class MixedA(nn.Module):
    """Mixed_5b..5d: 35x35, 1x1 / 5x5 / double 3x3 / pooled branches."""

    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x):
        """Inception-v3 35x35 block: 1x1, 5x5, double 3x3 and pooled branches, concatenated.

        Shape (N, cin, H, W) -> (N, 224 + pool_features, H, W).
        """
        b1 = self.branch1x1(x)
        b5 = _chain(self, "branch5x5_", 2, x)
        b3 = _chain(self, "branch3x3dbl_", 3, x)
        bp = self.branch_pool(avg_pool(x))
        return torch.cat([b1, b5, b3, bp], 1)


class MixedB(nn.Module):
    """Mixed_6a: 35x35 -> 17x17 (grid reduction)."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        """Inception-v3 reduction 35 -> 17: strided 3x3, double 3x3 and max-pool, concatenated."""
        b3 = self.branch3x3(x)
        bd = _chain(self, "branch3x3dbl_", 3, x)
        return torch.cat([b3, bd, F.max_pool2d(x, 3, stride=2)], 1)


class MixedC(nn.Module):
    """Mixed_6b..6e: 17x17 with factorised 7x7 convolutions (c7 channels inside)."""

    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        """Inception-v3 17x17 block: 1x1, factorised 7x7, double 7x7 and pooled, concatenated."""
        b1 = self.branch1x1(x)
        b7 = _chain(self, "branch7x7_", 3, x)
        bd = _chain(self, "branch7x7dbl_", 5, x)
        bp = self.branch_pool(avg_pool(x))
        return torch.cat([b1, b7, bd, bp], 1)


class MixedD(nn.Module):
    """Mixed_7a: 17x17 -> 8x8 (grid reduction)."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        """Inception-v3 grid reduction 17 -> 8: 3x3, 7x7x3 and max-pool branches concatenated."""
        b3 = _chain(self, "branch3x3_", 2, x)
        b7 = _chain(self, "branch7x7x3_", 4, x)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class MixedE(nn.Module):
    """Mixed_7b, 7c: 8x8 with the expanded filter bank; `pool` is "avg" or "max"."""

    def __init__(self, cin, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        """Inception-v3 8x8 block: 1x1, split 3x3, split double 3x3 and pooled, concatenated."""
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = _chain(self, "branch3x3dbl_", 2, x)
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        # The 2015-12-05 graph max-pools in its last block where the paper average-pools.
        if self.pool == "max":
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = avg_pool(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


_MIXED = ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")


class InceptionV3FID(nn.Module):
    """Inception-v3 of the FID TensorFlow graph (2015-12-05), default (random) weights.

    Load the real weights with ``inception_extractor`` (or ``load_strict``); the parameter names
    are torchvision's (see there).
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = MixedA(192, 32)
        self.Mixed_5c = MixedA(256, 64)
        self.Mixed_5d = MixedA(288, 64)
        self.Mixed_6a = MixedB(288)
        self.Mixed_6b = MixedC(768, 128)
        self.Mixed_6c = MixedC(768, 160)
        self.Mixed_6d = MixedC(768, 160)
        self.Mixed_6e = MixedC(768, 192)
        self.Mixed_7a = MixedD(768)
        self.Mixed_7b = MixedE(1280, pool="avg")
        self.Mixed_7c = MixedE(2048, pool="max")
        # Not used for features; present so that the weights file loads with strict=True.
        self.fc = nn.Linear(INCEPTION_DIM, INCEPTION_CLASSES)

    def forward(self, x):
        """pool3 features (N, 2048) of images x (N, 3, H, W) with values in [0, 1]."""
        x = F.interpolate(
            x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
        )
        x = 2 * x - 1  # the graph expects [-1, 1]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in _MIXED:
            x = getattr(self, f"Mixed_{name}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def _state_differences(own: dict, state: dict) -> list[str]:
    """'N missing (e.g. KEY)' and the like for every kind of difference between state dicts."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        k
        for k in own
        if k in state
        and (not hasattr(state[k], "shape") or tuple(state[k].shape) != tuple(own[k].shape))
    ]
    kinds = (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
    return [f"{len(keys)} {what} (e.g. {keys[0]})" for what, keys in kinds if keys]


def load_strict(module: nn.Module, state, source: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a one-line UsageError naming what differs.

    Parameters
    ----------
    module : torch.nn.Module
    state : dict of str to torch.Tensor
        The state dict read from a weights file.
    source : str
        The file, for the message.

    Raises
    ------
    UsageError
        If `state` is not a dict or its keys or shapes differ from the module's (a missing
        ``num_batches_tracked`` is filled in: exports from torch < 0.4.1 have none).
    """
    if not isinstance(state, dict):
        raise UsageError(f"{source}: expected a state dict, got {type(state).__name__}")
    own = module.state_dict()
    state = dict(state)
    # BatchNorm itself fills the counter in for version-less dicts, and it plays no part in
    # eval mode.
    for key, value in own.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = value.clone()
    parts = _state_differences(own, state)
    if parts:
        raise UsageError(f"{source} does not match the network: " + ", ".join(parts))
    module.load_state_dict(state, strict=True)


def inception_extractor(weights, device: str = "cpu", batch: int = 200) -> FeatureExtractor:
    """The 2048-d pool3 features of FID's Inception-v3, from a local weights file.

    The network is the "2015-12-05" TensorFlow Inception-v3 graph of FID (Heusel et al. 2017),
    as ported to PyTorch by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``, never
    downloaded here): torchvision's Inception3 layout without the auxiliary classifier, 1008
    classes, BatchNorm eps 1e-3, TensorFlow's average pooling without the padding
    (count_include_pad=False) in the A, C and first E blocks, max pooling in the last E block.
    Images are scaled to [0, 1], gray ones repeated to 3 channels, resized to 299 x 299
    (bilinear, align_corners=False) and mapped to [-1, 1], as pytorch-fid does.

    The file must be a plain state dict with exactly the keys of ``InceptionV3FID()``:
    ``Conv2d_{1a_3x3,2a_3x3,2b_3x3,3b_1x1,4a_3x3}``, ``Mixed_{5b,5c,5d,6a,6b,6c,6d,6e,7a,7b,7c}``
    with torchvision's branch names (``branch1x1``, ``branch5x5_1``, ``branch7x7dbl_3``,
    ``branch3x3_2a``, ``branch7x7x3_4``, ``branch_pool``, ...), each holding
    ``.conv.weight`` and ``.bn.{weight,bias,running_mean,running_var[,num_batches_tracked]}``
    (94 convolutions), plus ``fc.weight`` (1008, 2048) and ``fc.bias`` (1008,). This is the key
    list that pytorch-fid and torch-fidelity load with strict=True (read from their source;
    the real file was not available to check, so a missing ``num_batches_tracked`` is
    tolerated). torch-fidelity's own port of the same graph uses the same names and loads too,
    but the features then follow pytorch-fid's resizing, not torch-fidelity's TensorFlow-style
    one. The file is read with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    weights : str or Path
        The weights file (.pth / .pt, or .safetensors).
    device : str
        Torch device to run on.
    batch : int
        Images per forward pass.

    Returns
    -------
    FeatureExtractor
        Named ``inception-2015-12-05``, dim 2048: uint8 images (N, C, H, W) -> (N, 2048).

    Raises
    ------
    UsageError
        If the file is missing, unsafe to load, or does not match the network.
    """
    from deep.train import load_weights

    path = Path(weights).expanduser()
    state = load_weights(path, "cpu")
    model = InceptionV3FID()
    load_strict(model, state, f"Inception weights {path.name}")
    model = model.to(device).eval().requires_grad_(False)
    return FeatureExtractor(
        "inception-2015-12-05",
        _pool3_fn(model, device),
        dim=INCEPTION_DIM,
        batch=batch,
        info={"weights": str(path)},
        module=model,
    )


def _pool3_fn(model: InceptionV3FID, device: str):
    """uint8 images (N, C, H, W), C = 1 or 3 -> pool3 features (N, 2048) of `model`."""

    def fn(images: np.ndarray):
        with torch.inference_mode():
            x = torch.from_numpy(images).to(device, torch.float32) / 255.0
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            return model(x)

    return fn
