"""Image metrics on features: FID and improved precision and recall.

- ``fid``: FID (Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to
  a Local Nash Equilibrium", Eq. 6), the Frechet distance between the Gaussians fitted to two
  feature sets, in float64 with the conventions of pytorch-fid / clean-fid.
- ``improved_pr``: improved precision and recall (Kynkaanniemi et al., 2019, "Improved
  Precision and Recall Metric for Assessing Generative Models", Eq. 1-3), the k-NN balls of
  each set, computed in blocks so that 50k x 50k distances never materialise, and with every
  deciding distance free of cancellation.
- ``scores``: ``evaluate``, all three for two image sets in one feature space.

Features are float64 arrays of shape (N, D); the feature spaces that produce them from uint8
images (N, C, H, W) are in ``deep.features``. Metrics are comparable only within one feature
space.
"""

from deep.metrics.fid import feature_stats, fid_from_features, frechet_distance
from deep.metrics.improved_pr import (
    PrecisionRecall,
    default_k,
    kth_neighbour_sq,
    precision_recall,
)
from deep.metrics.scores import evaluate

__all__ = [
    "PrecisionRecall",
    "default_k",
    "evaluate",
    "feature_stats",
    "fid_from_features",
    "frechet_distance",
    "kth_neighbour_sq",
    "precision_recall",
]
