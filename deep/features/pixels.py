"""Raw pixels as features: the baseline feature space, with no network."""

from __future__ import annotations

import numpy as np

from deep.features.extractor import FeatureExtractor

__all__ = ["pixels_extractor"]


def pixels_extractor() -> FeatureExtractor:
    """Raw pixels as features: images (N, C, H, W) uint8 -> (N, C*H*W) float64 in [0, 1].

    Returns
    -------
    FeatureExtractor
        Named ``pixels``; its dimension is fixed by the first images it sees.
    """

    def fn(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1).astype(np.float64) / 255.0

    return FeatureExtractor("pixels", fn, dim=None, batch=4096)
