"""FID, precision and recall of generated images against real ones, in one feature space."""

from __future__ import annotations

import numpy as np

from deep.features.extractor import FeatureExtractor, check_images
from deep.metrics.fid import fid_from_features
from deep.metrics.improved_pr import precision_recall
from deep.metrics.validate import check_features
from stability.errors import UsageError

__all__ = ["evaluate"]


def evaluate(
    real_images: np.ndarray | None,
    generated_images: np.ndarray,
    extractor: FeatureExtractor,
    k: int | None = None,
    include_self: bool = False,
    real_features: np.ndarray | None = None,
) -> dict:
    """FID (Heusel et al. 2017, Eq. 6) and improved precision and recall (Kynkaanniemi et al.
    2019, Eq. 1-3) of generated images against real ones, in the extractor's feature space.

    Parameters
    ----------
    real_images : np.ndarray, uint8, shape (N, C, H, W), or None
        May be None when `real_features` is given.
    generated_images : np.ndarray, uint8, shape (M, C, H, W)
    extractor : FeatureExtractor
        The feature space (``deep.features``).
    k : int, optional
        Neighbourhood size of precision/recall; None: 3, or 4 with `include_self`.
    include_self : bool
        The precision/recall convention (see ``precision_recall``).
    real_features : np.ndarray, shape (N, D), optional
        Precomputed features of the real images (reused across iterations of the loop).

    Returns
    -------
    dict
        ``fid``, ``precision``, ``recall`` (float), ``n_real``, ``n_generated`` (int).

    Raises
    ------
    UsageError
        On bad images, features that do not match the real images, or too few of them.
    RunError
        On non-finite features or a refused matrix square root.
    """
    if real_features is None:
        if real_images is None:
            raise UsageError("give the real images or their features")
        real_features = extractor(real_images)
    else:
        real_features = check_features(real_features, "real features", minimum=2)
        if real_images is not None and len(check_images(real_images)) != len(real_features):
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
