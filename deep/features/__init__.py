"""Feature spaces for the image metrics: uint8 images (N, C, H, W) -> float64 features (N, D).

- ``extractor``: the ``FeatureExtractor`` protocol and ``callable_extractor`` (any callable or
  torch module);
- ``inception``: the Inception-v3 of FID from a local weights file (never downloaded);
- ``digits``: a small CNN trained on the real images themselves, cached on disk;
- ``pixels``: raw pixels, a baseline.

``make_extractor`` parses the ``inception=FILE | digits | pixels`` spec of the command line.
Metrics are comparable only within one feature space (``FeatureExtractor.name``). Importing this
package does not import torch: the inception and digits modules are imported when first used.
"""

from __future__ import annotations

from deep.features.extractor import (
    FeatureExtractor,
    callable_extractor,
    check_images,
    images_digest,
)
from deep.features.pixels import pixels_extractor
from stability.errors import UsageError

__all__ = [
    "FEATURE_SPECS",
    "FeatureExtractor",
    "callable_extractor",
    "check_images",
    "images_digest",
    "make_extractor",
    "pixels_extractor",
]

FEATURE_SPECS = ("inception=FILE", "digits", "pixels")


def make_extractor(spec: str, real=None, cache_dir=None, device: str = "cpu") -> FeatureExtractor:
    """The extractor named by a spec: ``inception=FILE``, ``digits`` or ``pixels``.

    Parameters
    ----------
    spec : str
        ``inception=FILE`` (``deep.features.inception.inception_extractor``), ``digits``
        (``deep.features.digits.digits_extractor``) or ``pixels``.
    real : ImageDataset or np.ndarray, uint8, shape (N, C, H, W), optional
        The real images, on which ``digits`` trains.
    cache_dir : str or Path, optional
        Where ``digits`` caches its network and features (None: no cache).
    device : str
        Torch device of the network.

    Returns
    -------
    FeatureExtractor

    Raises
    ------
    UsageError
        With one line, for an unknown or incomplete spec, ``digits`` without real images, or a
        weights file that is missing or does not match.
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
        from deep.features.inception import inception_extractor

        return inception_extractor(rest, device=device)
    if head == "digits" and not sep:
        if real is None:
            raise UsageError("digits features are trained on the real images: none were given")
        from deep.features.digits import digits_extractor

        return digits_extractor(real, cache_dir, device=device)
    if head == "pixels" and not sep:
        return pixels_extractor()
    raise UsageError(f"unknown feature spec {spec!r} (expected {', '.join(FEATURE_SPECS)})")
