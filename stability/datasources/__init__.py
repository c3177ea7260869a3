"""Data distributions p_data from anywhere, for the retraining operator and Theorems 1-2.

`make_data(spec)` reads a ``--data`` specification (`spec`): a scipy.stats distribution by
name and parameters (`ScipyData`), a mixture of those (`MixtureData`), a sample in a file
(`SampleData`: expectations by sample averages, with the bootstrap carrying their Monte-Carlo
error), a density tabulated on a grid (`GridData`). `FamilyData` is a model used as data.
Every source follows the protocol of `base`.
"""

from stability.datasources.base import DataSource
from stability.datasources.grid import GridData
from stability.datasources.mixture import FamilyData, MixtureData
from stability.datasources.sample import SampleData
from stability.datasources.scipy_dist import ScipyData
from stability.datasources.spec import make_data

__all__ = [
    "DataSource",
    "FamilyData",
    "GridData",
    "MixtureData",
    "SampleData",
    "ScipyData",
    "make_data",
]
