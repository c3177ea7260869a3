"""A small CNN trained on the real images themselves: an offline feature space, cached on disk.

When no pretrained network applies (the 8x8 digits, a data set without Inception weights at
hand), the 64 pre-activations of the penultimate layer of a 3-layer CNN trained to classify the
real images play the part of Inception's pool3 for FID and precision/recall. Training takes a
few seconds and is deterministic given the seed; the weights and the real images' features are
cached under a key that names the data, the labels, the seed and the network version.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deep.features.extractor import FeatureExtractor, images_digest
from stability.errors import UsageError

__all__ = ["DIGITS_DIM", "DigitsNet", "digits_extractor"]

DIGITS_DIM = 64
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
    if not str(device).startswith("cpu"):
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class DigitsNet(nn.Module):
    """3 strided convolutions, a 64-unit feature layer and a classifier head.

    Parameters
    ----------
    channels : int
        Image channels C of the input (N, C, H, W), values in [-1, 1].
    n_classes : int
        Outputs of the head (the training classes).
    """

    def __init__(self, channels: int, n_classes: int):
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
        """Class logits (N, n_classes) of images x (N, C, H, W)."""
        return self.head(self.features(x))


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
    n_classes = int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, global RNG intact
        torch.manual_seed(seed)
        net = DigitsNet(images.shape[1], n_classes)
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


def _cache_key(images: np.ndarray, labels: np.ndarray, seed: int) -> str:
    """16 hex digits naming the network version, the seed, the images and the labels."""
    h = hashlib.sha256(f"{_DIGITS_VERSION}|seed={int(seed)}|".encode())
    h.update(images_digest(images).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    return h.hexdigest()[:16]


def _load_cached_net(path: Path, channels: int, n_classes: int, device: str):
    """The cached network, or None when absent or unreadable (then it is retrained)."""
    if not path.is_file():
        return None
    from deep.train import load_weights

    try:
        state = load_weights(path, "cpu")
        net = DigitsNet(channels, n_classes)
        net.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, KeyError, TypeError):
        return None
    return net.to(device).eval().requires_grad_(False)


def _load_cached_features(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached features of the real images, or None when absent, stale or damaged."""
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


def _save_net(net: nn.Module, path: Path) -> None:
    from stability.runs.runfolder import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _real_dataset(real):
    """`real` as an ImageDataset of at least 2 images (UsageError otherwise)."""
    from deep.data import ImageDataset

    if isinstance(real, np.ndarray):
        real = ImageDataset(real, "real")
    if not isinstance(real, ImageDataset):
        raise UsageError(f"real must be an ImageDataset or a uint8 array, got {type(real)}")
    if len(real) < 2:
        raise UsageError(
            f"need at least 2 real images to train the feature network, got {len(real)}"
        )
    return real


def _network(images, labels, seed, device, weights_path):
    """(net, trained): the cached network when `weights_path` holds it, else a trained one."""
    n_classes = int(labels.max()) + 1
    if weights_path is not None:
        net = _load_cached_net(weights_path, images.shape[1], n_classes, device)
        if net is not None:
            return net, False
    net = _train_digits_net(images, labels, int(seed), device)
    if weights_path is not None:
        _save_net(net, weights_path)
    return net, True


def _feature_fn(net: nn.Module, shape: tuple, device: str):
    """uint8 images (n, *shape) -> features (n, 64) of `net`; other image shapes refused."""

    def fn(batch_images: np.ndarray):
        if batch_images.shape[1:] != shape:
            raise UsageError(
                f"the digits features were trained on images of shape {shape}, "
                f"got {batch_images.shape[1:]}"
            )
        with torch.inference_mode(), _cpu_threads(device):
            x = torch.from_numpy(batch_images).to(device, torch.float32) / 127.5 - 1
            return net.features(x)

    return fn


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

    Returns
    -------
    FeatureExtractor
        Named ``digits-KEY``, dim 64.

    Raises
    ------
    UsageError
        If `real` is not an image set of at least 2 images; the extractor raises it for images
        of another shape than the real ones.
    """
    real = _real_dataset(real)
    images = real.images
    labels, source = _training_labels(real, seed)
    key = _cache_key(images, labels, seed)
    weights_path, features_path = _cache_paths(cache_dir, key)
    net, trained = _network(images, labels, seed, device, weights_path)
    info = {
        "key": key,
        "labels": source,
        "seed": int(seed),
        "trained": trained,
        "weights": None if weights_path is None else str(weights_path),
        "features": None if features_path is None else str(features_path),
    }
    fn = _feature_fn(net, images.shape[1:], device)
    extractor = FeatureExtractor(
        f"digits-{key}", fn, dim=DIGITS_DIM, batch=batch, info=info, module=net
    )
    extractor.remember(images, _real_features(extractor, images, key, features_path, trained))
    return extractor


def _cache_paths(cache_dir, key: str) -> tuple[Path | None, Path | None]:
    """(weights, features) files of the cache entry `key`; (None, None) without a cache."""
    if cache_dir is None:
        return None, None
    cache = Path(cache_dir).expanduser()
    return cache / f"digits-{key}.pt", cache / f"digits-{key}.npz"


def _real_features(extractor, images, key: str, features_path, trained: bool) -> np.ndarray:
    """Features (N, 64) of the real images: cached ones when the network was not retrained,
    else extracted now and written to `features_path` (if any)."""
    if features_path is not None and not trained:
        features = _load_cached_features(features_path, key, (len(images), DIGITS_DIM))
        if features is not None:
            return features
    features = extractor(images)
    if features_path is not None:
        from stability.runs.runfolder import atomic_save_npz

        atomic_save_npz(features_path, features=features, key=np.array(key))
    return features
