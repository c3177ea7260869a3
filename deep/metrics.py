"""Image metrics in a pluggable feature space: FID and improved precision and recall.

- FID (Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
  Nash Equilibrium", Eq. 6): the Frechet distance between Gaussians fitted to the features,
  ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), in float64 with the conventions of
  pytorch-fid / clean-fid (see ``frechet_distance``).
- Improved precision and recall (Kynkaanniemi et al., 2019, "Improved Precision and Recall
  Metric for Assessing Generative Models", Eq. 1-3): each point's k-NN ball in its own set; the
  fraction of generated points inside a real ball (precision) and of real points inside a
  generated ball (recall), computed in blocks so that 50k x 50k distances never materialise.
- Feature spaces (``FeatureExtractor``): the Inception-v3 of FID from a local weights file
  (never downloaded), any callable or torch module, a small CNN trained on the real images
  themselves (cached on disk), and raw pixels as a baseline. ``make_extractor`` parses the
  ``inception=FILE | digits | pixels`` spec of the command line.

Images are numpy uint8 arrays of shape (N, C, H, W), C = 1 or 3, as in ``deep.data``; features
are float64 arrays of shape (N, D). Metrics are comparable only within one feature space
(``FeatureExtractor.name``).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg

from stability.errors import UsageError

__all__ = [
    "FeatureExtractor",
    "InceptionV3FID",
    "callable_extractor",
    "digits_extractor",
    "evaluate",
    "feature_stats",
    "fid_from_features",
    "frechet_distance",
    "images_digest",
    "inception_extractor",
    "make_extractor",
    "pixels_extractor",
    "precision_recall",
]

INCEPTION_DIM = 2048
INCEPTION_CLASSES = 1008  # the 2015-12-05 TensorFlow graph has 1008 outputs, not 1000
INCEPTION_SIZE = 299
DIGITS_DIM = 64
# Distances are computed on tiles of this many rows that start at multiples of it, so every
# entry comes out of an identically shaped BLAS call whatever ``batch`` is: BLAS may sum a dot
# product in a different order for a different matrix shape, which could flip a tie.
_TILE = 128
_IMAG_ATOL = 1e-3  # pytorch-fid's tolerance on the imaginary part of diag(sqrtm(S1 S2))


# --------------------------------------------------------------------------------------------
# Frechet Inception Distance


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a feature set, in float64.

    Parameters
    ----------
    features : np.ndarray, shape (N, D), N >= 2

    Returns
    -------
    mu : np.ndarray, shape (D,)
    sigma : np.ndarray, shape (D, D)
        The unbiased sample covariance (ddof = 1), ``np.cov(features, rowvar=False)``.
    """
    x = _check_features(features, "features", minimum=2)
    mu = x.mean(axis=0)
    sigma = np.atleast_2d(np.cov(x, rowvar=False))
    return mu, sigma


_SQRTM_DISP_DEFAULT_TRUE = (
    inspect.signature(scipy.linalg.sqrtm).parameters.get("disp", None) is not None
    and inspect.signature(scipy.linalg.sqrtm).parameters["disp"].default is True
)


def _sqrtm(a: np.ndarray) -> np.ndarray:
    # scipy >= 1.16 deprecates `disp` (gone in 1.18) and warns on singular input instead of
    # printing; older versions print unless disp=False. The callers test finiteness themselves.
    kwargs = {"disp": False} if _SQRTM_DISP_DEFAULT_TRUE else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = scipy.linalg.sqrtm(a, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID, Heusel et al. 2017, Eq. 6).

    d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)), in float64,
    with the conventions of pytorch-fid / clean-fid: the matrix square root is
    ``scipy.linalg.sqrtm(sigma1 @ sigma2)``; if it is not finite (a singular product),
    eps * I is added to both covariances for the square root only, with a warning; if it is
    complex, it is refused when an imaginary part on its diagonal exceeds 1e-3 in absolute value
    and its real part is used otherwise (round-off on nearly singular products).

    Parameters
    ----------
    mu1, mu2 : np.ndarray, shape (D,)
    sigma1, sigma2 : np.ndarray, shape (D, D)
        Covariance matrices (symmetric positive semi-definite).
    eps : float
        Diagonal offset of the retry.

    Raises
    ------
    ValueError
        On shape mismatch, non-finite input, or a square root with a large imaginary part.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise UsageError(f"means must both have shape (D,), got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise UsageError(
            f"covariances must have shape ({d}, {d}), got {sigma1.shape} and {sigma2.shape}"
        )
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise UsageError(f"{name} has non-finite values")
    if not (eps >= 0 and np.isfinite(eps)):
        raise UsageError(f"eps must be a finite number >= 0, got {eps!r}")

    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"sqrtm(sigma1 @ sigma2) is not finite (singular product); adding {eps:g} to the "
            "diagonal of both covariances",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = np.eye(d) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise UsageError(f"sqrtm(sigma1 @ sigma2) is not finite even with eps = {eps:g}")
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=_IMAG_ATOL):
            worst = float(np.max(np.abs(covmean.imag)))
            raise UsageError(
                f"sqrtm(sigma1 @ sigma2) has an imaginary component of {worst:.3g} "
                "(are the covariances positive semi-definite?)"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(real: np.ndarray, generated: np.ndarray) -> float:
    """FID between two feature sets: ``frechet_distance`` of their means and covariances.

    Parameters
    ----------
    real : np.ndarray, shape (N, D), N >= 2
    generated : np.ndarray, shape (M, D), M >= 2
    """
    real = _check_features(real, "real features", minimum=2)
    generated = _check_features(generated, "generated features", minimum=2)
    _check_same_dim(real, generated)
    return frechet_distance(*feature_stats(real), *feature_stats(generated))


# --------------------------------------------------------------------------------------------
# Improved precision and recall


def precision_recall(
    real: np.ndarray,
    generated: np.ndarray,
    k: int = 3,
    include_self: bool = False,
    batch: int = 10000,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, Eq. 1-3) of two feature sets.

    The radius of a real point is the distance to its k-th nearest neighbour among the real
    points, that of a generated point likewise among the generated points. precision = the
    fraction of generated points inside at least one real ball, recall = the fraction of real
    points inside at least one generated ball.

    Two conventions for the k-th neighbour and the ball:

    - ``include_self=False`` (default, the paper and its official code): the k-th nearest
      *other* point, and a point is inside when its distance is <= the radius; k = 3.
    - ``include_self=True`` (the ``prdc`` package, Naeem et al. 2020): the k-th nearest point
      counting the point itself as the first (distance 0), so k = 4 is the 3rd other neighbour
      (prdc's ``nearest_k = k - 1``), and inside means strictly < the radius.

    Squared distances are ||a||^2 + ||b||^2 - 2 a.b in float64, computed in blocks of ``batch``
    rows (rounded up to a multiple of 128) against the whole other set: memory is
    O(batch x max(N, M)), and the results do not depend on ``batch``.

    Parameters
    ----------
    real : np.ndarray, shape (N, D)
    generated : np.ndarray, shape (M, D)
    k : int
        Neighbourhood size; each set needs more than k points (at least k with include_self).
    include_self : bool
        The convention (see above).
    batch : int
        Rows per block.

    Returns
    -------
    (precision, recall) : tuple of float in [0, 1]
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise UsageError(f"batch must be an integer >= 1, got {batch!r}")
    need = int(k) if include_self else int(k) + 1
    real = _check_features(real, "real features", minimum=need)
    generated = _check_features(generated, "generated features", minimum=need)
    _check_same_dim(real, generated)
    block = -(-int(batch) // _TILE) * _TILE

    real_sq = _sq_norms(real)
    gen_sq = _sq_norms(generated)
    real_r2 = _kth_neighbour_sq(real, real_sq, int(k), include_self, block)
    gen_r2 = _kth_neighbour_sq(generated, gen_sq, int(k), include_self, block)
    strict = bool(include_self)
    precision = _inside_fraction(generated, gen_sq, real, real_sq, real_r2, strict, block)
    recall = _inside_fraction(real, real_sq, generated, gen_sq, gen_r2, strict, block)
    return precision, recall


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _sq_dists(x, x_sq, y, y_sq, start: int, stop: int) -> np.ndarray:
    """Squared distances (stop - start, len(y)) of rows start:stop of x to all of y."""
    out = np.empty((stop - start, len(y)))
    for s in range(start, stop, _TILE):
        e = min(s + _TILE, stop)
        tile = out[s - start : e - start]
        np.matmul(np.ascontiguousarray(x[s:e]), y.T, out=tile)
        tile *= -2.0
        tile += x_sq[s:e, None]
        tile += y_sq[None, :]
    # Cancellation can leave tiny negative values for (near-)duplicates.
    np.maximum(out, 0.0, out=out)
    return out


def _kth_neighbour_sq(x, x_sq, k: int, include_self: bool, block: int) -> np.ndarray:
    """Squared distance (N,) of each point of x to its k-th nearest neighbour in x."""
    n = len(x)
    r2 = np.empty(n)
    for start in range(0, n, block):
        stop = min(start + block, n)
        d2 = _sq_dists(x, x_sq, x, x_sq, start, stop)
        rows = np.arange(stop - start)
        # Set the self-distance exactly (the formula leaves round-off, and a duplicate of the
        # point must still count as a neighbour): 0 when the point counts, +inf when it is out.
        d2[rows, start + rows] = 0.0 if include_self else np.inf
        d2.partition(k - 1, axis=1)
        r2[start:stop] = d2[:, k - 1]
    return r2


def _inside_fraction(points, p_sq, centres, c_sq, c_r2, strict: bool, block: int) -> float:
    """Fraction of `points` inside at least one ball (centres, squared radii c_r2)."""
    count = 0
    for start in range(0, len(points), block):
        stop = min(start + block, len(points))
        d2 = _sq_dists(points, p_sq, centres, c_sq, start, stop)
        inside = d2 < c_r2[None, :] if strict else d2 <= c_r2[None, :]
        count += int(np.count_nonzero(inside.any(axis=1)))
    return count / len(points)


def _check_features(x, name: str, minimum: int = 1) -> np.ndarray:
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        x = np.asarray(x, dtype=np.float64)
    else:
        raise UsageError(f"{name} must be an array of shape (N, D), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] < 1:
        raise UsageError(f"{name} must have shape (N, D), got {x.shape}")
    if len(x) < minimum:
        raise UsageError(f"{name}: need at least {minimum} points, got {len(x)}")
    if not np.isfinite(x).all():
        raise UsageError(f"{name} has non-finite values")
    return x


def _check_same_dim(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise UsageError(
            f"real and generated features differ in dimension: {a.shape[1]} vs {b.shape[1]}"
        )


# --------------------------------------------------------------------------------------------
# Feature extractors


def _check_images(images, name: str = "images") -> np.ndarray:
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
    """SHA-256 of a uint8 image array (N, C, H, W): its shape and its bytes."""
    h = hashlib.sha256(f"{images.dtype.str}{images.shape}".encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def _to_float64(out) -> np.ndarray:
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
        """Return `features` (N, dim) for exactly these images (N, C, H, W) from now on."""
        images = _check_images(images)
        features = self._checked(_to_float64(features), len(images))
        self._known[images_digest(images)] = features

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features (N, dim), float64, of uint8 images (N, C, H, W)."""
        images = _check_images(images)
        if self._known:
            hit = self._known.get(images_digest(images))
            if hit is not None:
                return hit.copy()
        chunks = []
        for s in range(0, len(images), self.batch):
            part = images[s : s + self.batch]
            chunks.append(self._checked(_to_float64(self.fn(part)), len(part)))
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
        if not np.isfinite(feats).all():
            raise UsageError(f"{self.name}: non-finite features")
        return feats


def pixels_extractor() -> FeatureExtractor:
    """Raw pixels as features: images (N, C, H, W) -> (N, C*H*W) in [0, 1] (a baseline)."""

    def fn(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1).astype(np.float64) / 255.0

    return FeatureExtractor("pixels", fn, dim=None, batch=4096)


def callable_extractor(fn, name: str, dim: int | None = None, batch: int = 500) -> FeatureExtractor:
    """Features from any callable or torch module mapping images in [0, 1] to (N, D).

    The images (n, C, H, W) are given as float32 in [0, 1] (x / 255): as a torch tensor on the
    module's device when `fn` is a ``torch.nn.Module`` (put in eval mode, run without
    gradients), as a numpy array otherwise. `fn` may return a numpy array or a tensor of shape
    (n, D); D is checked against `dim` (or fixed by the first call when dim is None).
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


# ---- Inception-v3 of FID ---------------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - the torch extra is installed in tests
        raise ImportError("this feature space needs torch: pip install torch==2.13.0") from err
    return torch


def _build_inception_classes():
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class ConvBN(nn.Module):
        """Convolution without bias, batch norm (eps 1e-3, as TensorFlow's graph), ReLU."""

        def __init__(self, cin, cout, kernel, stride=1, padding=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg_pool(x):
        # TensorFlow's average pool leaves the zero padding out of the mean.
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    class MixedA(nn.Module):  # Mixed_5b..5d: 35x35
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
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            bp = self.branch_pool(avg_pool(x))
            return torch.cat([b1, b5, b3, bp], 1)

    class MixedB(nn.Module):  # Mixed_6a: 35x35 -> 17x17
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
            self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
            self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3(x)
            bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([b3, bd, F.max_pool2d(x, 3, stride=2)], 1)

    class MixedC(nn.Module):  # Mixed_6b..6e: 17x17, factorised 7x7
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
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = x
            for i in range(1, 6):
                bd = getattr(self, f"branch7x7dbl_{i}")(bd)
            bp = self.branch_pool(avg_pool(x))
            return torch.cat([b1, b7, bd, bp], 1)

    class MixedD(nn.Module):  # Mixed_7a: 17x17 -> 8x8
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = ConvBN(cin, 192, 1)
            self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
            self.branch7x7x3_1 = ConvBN(cin, 192, 1)
            self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
            self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
            self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3_2(self.branch3x3_1(x))
            b7 = x
            for i in range(1, 5):
                b7 = getattr(self, f"branch7x7x3_{i}")(b7)
            return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)

    class MixedE(nn.Module):  # Mixed_7b, 7c: 8x8, expanded filter bank
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
            b1 = self.branch1x1(x)
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            # The 2015-12-05 graph max-pools in its last block where the paper average-pools.
            if self.pool == "max":
                pooled = F.max_pool2d(x, 3, stride=1, padding=1)
            else:
                pooled = avg_pool(x)
            return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)

    class InceptionV3FID(nn.Module):
        """Inception-v3 of the FID TensorFlow graph (2015-12-05); see ``inception_extractor``."""

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
            for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
                x = getattr(self, f"Mixed_{name}")(x)
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    return InceptionV3FID


_INCEPTION_CLASS = None


def InceptionV3FID():
    """A new FID Inception-v3 ``torch.nn.Module`` with default (random) weights.

    A function named as the class it instantiates: the class is built on first use, so that
    importing this module does not import torch.
    """
    global _INCEPTION_CLASS
    if _INCEPTION_CLASS is None:
        _INCEPTION_CLASS = _build_inception_classes()
    return _INCEPTION_CLASS()


def _load_strict(module, state, source: str) -> None:
    """load_state_dict(strict=True) with a one-line ValueError naming what differs."""
    if not isinstance(state, dict):
        raise UsageError(f"{source}: expected a state dict, got {type(state).__name__}")
    own = module.state_dict()
    state = dict(state)
    # Exports from torch < 0.4.1 have no BatchNorm counter; BatchNorm itself fills it in for
    # version-less dicts, and it plays no part in eval mode.
    for key, value in own.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = value.clone()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        k
        for k in own
        if k in state
        and (not hasattr(state[k], "shape") or tuple(state[k].shape) != tuple(own[k].shape))
    ]
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", shapes),
        ):
            if keys:
                parts.append(f"{len(keys)} {what} (e.g. {keys[0]})")
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

    Raises
    ------
    ValueError
        If the file is missing, unsafe to load, or does not match the network.
    """
    torch = _torch()
    path = Path(weights).expanduser()
    from deep.train import load_weights

    state = load_weights(path, "cpu")
    model = InceptionV3FID()
    _load_strict(model, state, f"Inception weights {path.name}")
    model = model.to(device).eval().requires_grad_(False)

    def fn(images: np.ndarray):
        with torch.inference_mode():
            x = torch.from_numpy(images).to(device, torch.float32) / 255.0
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            return model(x)

    return FeatureExtractor(
        "inception-2015-12-05",
        fn,
        dim=INCEPTION_DIM,
        batch=batch,
        info={"weights": str(path)},
        module=model,
    )


# ---- a small CNN trained on the real images ------------------------------------------------------

# Bump when the network or its training changes, so old caches are not reused.
_DIGITS_VERSION = "digits-cnn-v1"
_DIGITS_STEPS = 400  # about 14 epochs of the 1797 digits
_DIGITS_BATCH = 64
_DIGITS_LR = 2e-3
_DIGITS_PSEUDO_CLASSES = 10


@contextlib.contextmanager
def _cpu_threads(device: str, n: int = 1):
    """Run torch on `n` CPU threads inside the block (then restore the setting).

    The digits network is so small that thread synchronisation dominates: on a busy 2-core
    machine one thread trains it ten times faster than two. One thread also makes its weights
    and features independent of the machine's thread count.
    """
    torch = _torch()
    if not str(device).startswith("cpu"):
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _digits_net(channels: int, n_classes: int):
    torch = _torch()
    nn = torch.nn

    class DigitsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(channels, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(4),
                nn.Flatten(),
                # The features are this layer's pre-activations: a ReLU here would leave dead
                # units with zero variance, hence singular covariances in FID.
                nn.Linear(64 * 16, DIGITS_DIM),
            )
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(DIGITS_DIM, n_classes))

        def forward(self, x):
            return self.head(self.features(x))

    return DigitsNet()


def _training_labels(real, seed: int) -> tuple[np.ndarray, str]:
    """Integer classes (N,) to train on, and where they come from."""
    labels = real.labels
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 2:  # one-hot or score vectors (EDM-style conditional labels)
            labels = labels.argmax(axis=1)
        classes, inverse = np.unique(labels, return_inverse=True)
        if len(classes) >= 2:
            return inverse.astype(np.int64), "labels"
    # Without (informative) labels, classify k-means clusters of the pixels instead: the
    # network then learns what separates the data's main modes, which is what FID should see.
    from sklearn.cluster import KMeans

    n_clusters = min(_DIGITS_PSEUDO_CLASSES, len(real))
    x = real.images.reshape(len(real), -1).astype(np.float64) / 255.0
    km = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit(x)
    return km.labels_.astype(np.int64), "kmeans"


def _train_digits_net(images: np.ndarray, labels: np.ndarray, seed: int, device: str):
    """The CNN trained with Adam on (images (N, C, H, W) uint8, labels (N,)); deterministic."""
    torch = _torch()
    n_classes = int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, global RNG intact
        torch.manual_seed(seed)
        net = _digits_net(images.shape[1], n_classes)
    net = net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=_DIGITS_LR)
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(images).to(device, torch.float32) / 127.5 - 1
    y_all = torch.from_numpy(labels).to(device)
    n = len(images)
    with _cpu_threads(device):
        order = torch.randperm(n, generator=gen)
        pos = 0
        for _ in range(_DIGITS_STEPS):
            if pos + _DIGITS_BATCH > n:  # a fresh epoch: reshuffle
                order = torch.randperm(n, generator=gen)
                pos = 0
            idx = order[pos : pos + _DIGITS_BATCH].to(device)
            pos += _DIGITS_BATCH
            loss = torch.nn.functional.cross_entropy(net(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval().requires_grad_(False)


def digits_extractor(
    real, cache_dir, device: str = "cpu", seed: int = 0, batch: int = 1000
) -> FeatureExtractor:
    """64-d features of a small CNN trained on the real images themselves (offline FID).

    A 3-layer CNN is trained to classify the real images: on their labels when ``real.labels``
    holds at least two classes (digits: the 10 digits; one-hot rows are argmax-ed), otherwise
    on 10 k-means clusters of their pixels. The features are the pre-activations of its
    penultimate (64-unit) layer, the analogue of Inception's pool3 for FID and precision/recall
    when no pretrained network applies. Deterministic given the seed (on one machine).

    With `cache_dir`, the trained weights (``digits-KEY.pt``) and the real images' features
    (``digits-KEY.npz``) are written there atomically, KEY being a hash of the images, the
    training labels, the seed and the network version; a later call with the same data loads
    them instead of training. The extractor returns the cached features for the real images
    and accepts only images of their shape (C, H, W). ``info["trained"]`` says whether this call
    trained the network.

    Parameters
    ----------
    real : ImageDataset or np.ndarray
        The real images, uint8 (N, C, H, W), optionally labelled (labels (N,) or (N, K)).
    cache_dir : str or Path or None
        Where to cache; None trains every time.
    device : str
        Torch device for training and features.
    seed : int
        Seed of the initial weights, the minibatch order and k-means.
    batch : int
        Images per forward pass when extracting.
    """
    torch = _torch()
    from deep.data import ImageDataset

    if isinstance(real, np.ndarray):
        real = ImageDataset(real, "real")
    if not isinstance(real, ImageDataset):
        raise UsageError(f"real must be an ImageDataset or a uint8 array, got {type(real)}")
    if len(real) < 2:
        raise UsageError(
            f"need at least 2 real images to train the feature network, got {len(real)}"
        )
    images = real.images
    labels, source = _training_labels(real, seed)
    h = hashlib.sha256(f"{_DIGITS_VERSION}|seed={int(seed)}|".encode())
    h.update(images_digest(images).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    key = h.hexdigest()[:16]
    shape = images.shape[1:]
    n_classes = int(labels.max()) + 1

    net = None
    features = None
    trained = False
    weights_path = features_path = None
    if cache_dir is not None:
        cache = Path(cache_dir).expanduser()
        weights_path = cache / f"digits-{key}.pt"
        features_path = cache / f"digits-{key}.npz"
        net = _load_cached_net(weights_path, images.shape[1], n_classes, device)
        if net is not None:
            features = _load_cached_features(features_path, key, (len(images), DIGITS_DIM))
    if net is None:
        net = _train_digits_net(images, labels, int(seed), device)
        trained = True
        if weights_path is not None:
            from stability.runs.runfolder import atomic_write_bytes

            buf = io.BytesIO()
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, buf)
            atomic_write_bytes(weights_path, buf.getvalue())

    def fn(batch_images: np.ndarray):
        if batch_images.shape[1:] != shape:
            raise UsageError(
                f"the digits features were trained on images of shape {shape}, "
                f"got {batch_images.shape[1:]}"
            )
        with torch.inference_mode(), _cpu_threads(device):
            x = torch.from_numpy(batch_images).to(device, torch.float32) / 127.5 - 1
            return net.features(x)

    info = {
        "key": key,
        "labels": source,
        "seed": int(seed),
        "trained": trained,
        "weights": None if weights_path is None else str(weights_path),
        "features": None if features_path is None else str(features_path),
    }
    extractor = FeatureExtractor(
        f"digits-{key}", fn, dim=DIGITS_DIM, batch=batch, info=info, module=net
    )
    if features is None:
        features = extractor(images)
        if features_path is not None:
            from stability.runs.runfolder import atomic_save_npz

            atomic_save_npz(features_path, features=features, key=np.array(key))
    extractor.remember(images, features)
    return extractor


def _load_cached_net(path: Path, channels: int, n_classes: int, device: str):
    """The cached network, or None when absent or unreadable (then it is retrained)."""
    if not path.is_file():
        return None
    from deep.train import load_weights

    try:
        state = load_weights(path, "cpu")
        net = _digits_net(channels, n_classes)
        net.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, KeyError, TypeError):
        return None
    return net.to(device).eval().requires_grad_(False)


def _load_cached_features(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            features = np.asarray(f["features"], dtype=np.float64)
    except (OSError, ValueError, KeyError):
        return None
    if features.shape != shape or not np.isfinite(features).all():
        return None
    return features


# ---- the command line's spec ---------------------------------------------------------------------

FEATURE_SPECS = ("inception=FILE", "digits", "pixels")


def make_extractor(spec: str, real=None, cache_dir=None, device: str = "cpu") -> FeatureExtractor:
    """The extractor named by a spec: ``inception=FILE``, ``digits`` or ``pixels``.

    ``digits`` trains on `real` (an ImageDataset or uint8 array (N, C, H, W)) and caches under
    `cache_dir` (None: no cache). Raises ValueError with one line for anything else.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"feature spec must be one of {', '.join(FEATURE_SPECS)}, got {spec!r}")
    head, sep, rest = spec.strip().partition("=")
    if head == "inception":
        if not sep or not rest:
            raise UsageError(
                "inception features need the weights file: inception=FILE "
                "(pt_inception-2015-12-05-6726825d.pth; nothing is downloaded)"
            )
        return inception_extractor(rest, device=device)
    if head == "digits" and not sep:
        if real is None:
            raise UsageError("digits features are trained on the real images: none were given")
        return digits_extractor(real, cache_dir, device=device)
    if head == "pixels" and not sep:
        return pixels_extractor()
    raise UsageError(f"unknown feature spec {spec!r} (expected {', '.join(FEATURE_SPECS)})")


# --------------------------------------------------------------------------------------------
# Everything at once


def evaluate(
    real_images: np.ndarray,
    generated_images: np.ndarray,
    extractor: FeatureExtractor,
    k: int = 3,
    include_self: bool = False,
    real_features: np.ndarray | None = None,
) -> dict:
    """FID, precision and recall of generated images against real ones in one feature space.

    Parameters
    ----------
    real_images : np.ndarray, uint8, shape (N, C, H, W)
        May be None when `real_features` is given.
    generated_images : np.ndarray, uint8, shape (M, C, H, W)
    extractor : FeatureExtractor
    k, include_self
        Precision/recall convention (see ``precision_recall``).
    real_features : np.ndarray, shape (N, D), optional
        Precomputed features of the real images (reused across iterations of the loop).

    Returns
    -------
    dict
        ``fid``, ``precision``, ``recall`` (float), ``n_real``, ``n_generated`` (int).
    """
    if real_features is None:
        if real_images is None:
            raise UsageError("give the real images or their features")
        real_features = extractor(real_images)
    else:
        real_features = _check_features(real_features, "real features", minimum=2)
        if real_images is not None and len(_check_images(real_images)) != len(real_features):
            raise UsageError(
                f"{len(real_features)} real features for {len(real_images)} real images"
            )
    generated_features = extractor(generated_images)
    fid = fid_from_features(real_features, generated_features)
    precision, recall = precision_recall(
        real_features, generated_features, k=k, include_self=include_self
    )
    return {
        "fid": fid,
        "precision": precision,
        "recall": recall,
        "n_real": int(len(real_features)),
        "n_generated": int(len(generated_features)),
    }
