"""The feature-extractor protocol: uint8 images (N, C, H, W) -> float64 features (N, D).

``FeatureExtractor`` wraps any batched function with a name (metrics are comparable only within
one feature space), checks what it returns and can remember the features of known images;
``callable_extractor`` adapts a plain callable or a torch module to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from stability.errors import RunError, UsageError

__all__ = [
    "FeatureExtractor",
    "callable_extractor",
    "check_images",
    "images_digest",
    "require_torch",
    "to_float64",
]


def require_torch():
    """The torch module, or an ImportError naming the install command."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - the torch extra is installed in tests
        raise ImportError("this feature space needs torch: pip install torch==2.13.0") from err
    return torch


def check_images(images, name: str = "images") -> np.ndarray:
    """`images` itself if it is a uint8 array of shape (N, C, H, W) with C = 1 or 3.

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, C, H, W)
    name : str
        What they are, for the error message.

    Raises
    ------
    UsageError
        On another type, dtype, number of dimensions or channels.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        got = (
            f"{images.dtype} {images.shape}"
            if isinstance(images, np.ndarray)
            else repr(type(images))
        )
        raise UsageError(f"{name} must be a uint8 array of shape (N, C, H, W), got {got}")
    if images.shape[1] not in (1, 3):
        raise UsageError(f"{name} must have 1 or 3 channels, got shape {images.shape}")
    return images


def images_digest(images: np.ndarray) -> str:
    """SHA-256 (hex) of an image array: its dtype, its shape and its bytes.

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, C, H, W)
    """
    h = hashlib.sha256(f"{images.dtype.str}{images.shape}".encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def to_float64(out) -> np.ndarray:
    """A numpy float64 array from an array or a torch tensor (detached, moved to the CPU)."""
    if hasattr(out, "detach"):  # a torch tensor: leave the graph and the device first
        out = out.detach().cpu().double().numpy()
    return np.asarray(out, dtype=np.float64)


class FeatureExtractor:
    """Maps uint8 images (N, C, H, W) to float64 features (N, dim), in batches.

    Parameters
    ----------
    name : str
        The feature space (metrics are comparable only within one name).
    fn : callable
        uint8 array (n, C, H, W) -> array or tensor (n, dim), for n <= batch.
    dim : int, optional
        Feature dimension; None until the first call when it is not known in advance.
    batch : int
        Images per call of `fn`.
    info : dict, optional
        What produced the extractor (weights path, cache key...), for run folders.
    module : torch.nn.Module, optional
        The network behind `fn`, when there is one (to inspect it or move it).

    Features of images given to ``remember`` are returned without calling `fn` (the digits
    extractor remembers its training set, whose features are cached on disk).
    """

    def __init__(
        self,
        name: str,
        fn: Callable,
        dim: int | None = None,
        batch: int = 500,
        info: dict | None = None,
        module=None,
    ):
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise UsageError(f"batch must be an integer >= 1, got {batch!r}")
        self.name = name
        self.fn = fn
        self.dim = None if dim is None else int(dim)
        self.batch = int(batch)
        self.info = dict(info or {})
        self.module = module
        self._known: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"FeatureExtractor(name={self.name!r}, dim={self.dim}, batch={self.batch})"

    def remember(self, images: np.ndarray, features: np.ndarray) -> None:
        """Return these features from now on for exactly these images.

        Parameters
        ----------
        images : np.ndarray, uint8, shape (N, C, H, W)
        features : np.ndarray or torch.Tensor, shape (N, dim)
        """
        images = check_images(images)
        features = self._checked(to_float64(features), len(images))
        self._known[images_digest(images)] = features

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features (N, dim), float64, of uint8 images (N, C, H, W).

        Raises
        ------
        UsageError
            On bad images, or features of another dimension than before (images of another
            shape) or of another length than the batch.
        RunError
            On non-finite features.
        """
        images = check_images(images)
        if self._known:
            hit = self._known.get(images_digest(images))
            if hit is not None:
                return hit.copy()
        chunks = []
        for s in range(0, len(images), self.batch):
            part = images[s : s + self.batch]
            chunks.append(self._checked(to_float64(self.fn(part)), len(part)))
        if not chunks:
            return np.zeros((0, self.dim or 0))
        return np.concatenate(chunks)

    def _checked(self, feats: np.ndarray, n: int) -> np.ndarray:
        if feats.ndim != 2 or len(feats) != n:
            raise UsageError(f"{self.name}: features must have shape ({n}, D), got {feats.shape}")
        if self.dim is None:
            self.dim = feats.shape[1]
        elif feats.shape[1] != self.dim:
            raise UsageError(
                f"{self.name}: features have dimension {feats.shape[1]}, expected {self.dim} "
                "(images of another shape?)"
            )
        # The images were accepted; a network that outputs NaN failed during the run.
        if not np.isfinite(feats).all():
            raise RunError(f"{self.name}: non-finite features")
        return feats


def callable_extractor(fn, name: str, dim: int | None = None, batch: int = 500) -> FeatureExtractor:
    """Features from any callable or torch module mapping images in [0, 1] to (N, D).

    The images (n, C, H, W) are given as float32 in [0, 1] (x / 255): as a torch tensor on the
    module's device when `fn` is a ``torch.nn.Module`` (put in eval mode, run without
    gradients), as a numpy array otherwise. `fn` may return a numpy array or a tensor of shape
    (n, D); D is checked against `dim` (or fixed by the first call when dim is None).

    Parameters
    ----------
    fn : callable or torch.nn.Module
        float32 images (n, C, H, W) in [0, 1] -> features (n, D).
    name : str
        The feature space's name.
    dim : int, optional
        The expected D.
    batch : int
        Images per call.

    Returns
    -------
    FeatureExtractor
    """
    if not callable(fn):
        raise UsageError(f"fn must be callable, got {type(fn).__name__}")
    try:
        import torch
    except ImportError:  # plain callables work without torch
        torch = None

    if torch is not None and isinstance(fn, torch.nn.Module):
        module = fn.eval()
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")

        def run_module(images: np.ndarray):
            with torch.inference_mode():
                return module(torch.from_numpy(images).to(device, torch.float32) / 255.0)

        return FeatureExtractor(name, run_module, dim=dim, batch=batch, module=module)

    def run(images: np.ndarray):
        return fn(images.astype(np.float32) / np.float32(255))

    return FeatureExtractor(name, run, dim=dim, batch=batch)
