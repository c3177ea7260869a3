"""Real-data distributions of the simulators: Gaussian, two moons, 8 gaussians, or a .npy file.

Generators follow the code the experiments of the paper were run with (re-implemented here with
numpy generators, not copied):

- ``moons`` (torchcfm ``sample_moons``, built on torchdyn ``generate_moons(n, noise=0.2)``):
  n//2 points at equally spaced angles on the upper arc (cos a, sin a), the rest on the lower arc
  (1 - cos a, 1/2 - sin a), a in [0, pi]; each point is shifted by u (1, 1) with
  u ~ Uniform[0, 0.2) (the same shift on both coordinates), then mapped by x -> 3x - 1.
- ``moons-ffjord`` (FFJORD ``toy_data``, scikit-learn ``make_moons(n, noise=0.1)``): the same
  two arcs, isotropic Gaussian noise N(0, 0.1^2 I), then x -> 2x + (-1, -0.2), rows shuffled.
- ``8gaussians`` (torchcfm ``sample_8gaussians``): centres 5 (cos k pi/4, sin k pi/4), a centre
  chosen uniformly per point, plus N(0, sqrt(0.1) I) noise (torchcfm passes var = 0.1 through
  sqrt as the covariance, so the noise standard deviation is 0.1^(1/4) = 0.562).
- ``8gaussians-ffjord`` (FFJORD ``toy_data``): centres 4 (cos k pi/4, sin k pi/4), noise
  N(0, 0.5^2 I), the sum divided by 1.414.
- ``gaussian``: N(0, Sigma_data) in R^d; Sigma_data = I, or a random SPD matrix with condition
  number ``cond`` (fixed eigenbasis from seed 0) for anisotropic experiments.

The arcs of both moons use a deterministic grid of angles, as the originals do; only the noise
(and the row order) is random. Population moments (the "data's Gaussian" used by the metrics) are
exact: the arc moments are closed-form integrals over a uniform angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stability.errors import UsageError, check_dim, check_finite, check_n
from stability.linalg import random_spd

DATASETS = ("gaussian", "moons", "moons-ffjord", "8gaussians", "8gaussians-ffjord")
TWO_D = ("moons", "moons-ffjord", "8gaussians", "8gaussians-ffjord")
# Largest condition number of Sigma_data for the 'gaussian' data: its inverse, square root and
# determinant stay accurate in float64 up to about there (measured up to 1e14 at d = 2, 3, 5;
# 1e30 gives singular matrices).
MAX_COND = 1e14


def _arcs(n: int) -> np.ndarray:
    """The two noiseless moons (upper arc first), equally spaced angles, shape (n, 2)."""
    n_out = n // 2
    n_in = n - n_out
    a_out = np.linspace(0, np.pi, n_out)
    a_in = np.linspace(0, np.pi, n_in)
    upper = np.stack([np.cos(a_out), np.sin(a_out)], axis=1)
    lower = np.stack([1 - np.cos(a_in), 0.5 - np.sin(a_in)], axis=1)
    return np.concatenate([upper, lower])


def _arc_moments() -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the noiseless moons with a uniform angle (n -> inf)."""
    # Upper arc: E cos = 0, E sin = 2/pi, E cos^2 = E sin^2 = 1/2, E cos sin = 0.
    # Lower arc = (1, 1/2) - (cos, sin): mean (1, 1/2 - 2/pi), same second central moments.
    e_sin = 2 / math.pi
    m_up = np.array([0.0, e_sin])
    m_lo = np.array([1.0, 0.5 - e_sin])
    c_arc = np.diag([0.5, 0.5 - e_sin**2])  # covariance of (cos a, sin a), a ~ U[0, pi]
    mean = 0.5 * (m_up + m_lo)
    between = 0.25 * np.outer(m_up - m_lo, m_up - m_lo)
    return mean, c_arc + between


def sample_moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """torchcfm's two moons, shape (n, 2) (see the module docstring)."""
    x = _arcs(n) + rng.random((n, 1)) * 0.2
    return 3 * x - 1


def sample_moons_ffjord(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD's two moons, shape (n, 2) (see the module docstring)."""
    x = _arcs(n) + 0.1 * rng.standard_normal((n, 2))
    return (2 * x + np.array([-1.0, -0.2]))[rng.permutation(n)]


_CENTRES = np.array([[math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)] for k in range(8)])


def sample_8gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """torchcfm's 8 gaussians, shape (n, 2) (see the module docstring)."""
    centres = 5 * _CENTRES[rng.integers(0, 8, size=n)]
    return centres + 0.1**0.25 * rng.standard_normal((n, 2))


def sample_8gaussians_ffjord(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD's 8 gaussians, shape (n, 2) (see the module docstring)."""
    centres = 4 * _CENTRES[rng.integers(0, 8, size=n)]
    return (centres + 0.5 * rng.standard_normal((n, 2))) / 1.414


def mode_centres_and_spread(name: str) -> tuple[np.ndarray, float] | None:
    """Mode centres and noise standard deviation of an 8-gaussians data set (None otherwise).

    Returns
    -------
    centres : ndarray, shape (8, 2)
        The mixture's component means, as sampled by ``sample_8gaussians*``.
    spread : float
        The per-coordinate standard deviation of a component.
    """
    if name == "8gaussians":
        return 5 * _CENTRES, 0.1**0.25
    if name == "8gaussians-ffjord":
        return 4 * _CENTRES / 1.414, 0.5 / 1.414
    return None


def population_moments(name: str, dim: int = 2, cond: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean (d,) and covariance (d, d) of a named data distribution."""
    if name == "gaussian":
        return np.zeros(dim), gaussian_covariance(dim, cond)
    if name == "moons":
        m, c = _arc_moments()
        noise_var = 0.2**2 / 12  # u ~ U[0, 0.2), added to both coordinates
        return 3 * (m + 0.1) - 1, 9 * (c + noise_var * np.ones((2, 2)))
    if name == "moons-ffjord":
        m, c = _arc_moments()
        return 2 * m + np.array([-1.0, -0.2]), 4 * (c + 0.01 * np.eye(2))
    # Uniform over the 8 unit directions: E[c c^T] = I/2.
    if name == "8gaussians":
        return np.zeros(2), (25 * 0.5 + 0.1**0.5) * np.eye(2)
    if name == "8gaussians-ffjord":
        return np.zeros(2), (16 * 0.5 + 0.25) / 1.414**2 * np.eye(2)
    raise UsageError(
        f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} or a .npy file"
    )


def gaussian_covariance(dim: int, cond: float = 1.0) -> np.ndarray:
    """Sigma_data of the 'gaussian' data: I, or random SPD with condition `cond` (seed 0)."""
    if cond == 1.0:
        return np.eye(dim)
    return random_spd(dim, cond, np.random.default_rng(0))


_SAMPLERS = {
    "moons": sample_moons,
    "moons-ffjord": sample_moons_ffjord,
    "8gaussians": sample_8gaussians,
    "8gaussians-ffjord": sample_8gaussians_ffjord,
}


@dataclass
class DataSource:
    """The real-data distribution of a simulation.

    Parameters
    ----------
    name : a name of DATASETS, or the path of a .npy file of shape (N, d)
    dim : dimension d
    mean, cov : population moments, shapes (d,) and (d, d) (the data's Gaussian)
    points : for a file, its rows, shape (N, d)
    """

    name: str
    dim: int
    mean: np.ndarray
    cov: np.ndarray
    cond: float = 1.0
    points: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_gaussian(self) -> bool:
        """Whether the data are N(0, Sigma_data) (the exact engine then needs no points)."""
        return self.name == "gaussian"

    @property
    def is_file(self) -> bool:
        """Whether the data are the rows of a .npy file (`points`)."""
        return self.points is not None

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n fresh points, shape (n, d) (a file is sampled without replacement)."""
        if self.is_gaussian:
            root = np.linalg.cholesky(self.cov)
            return self.mean + rng.standard_normal((n, self.dim)) @ root.T
        if self.is_file:
            if n > len(self.points):
                raise UsageError(f"asked for {n} points from a file of {len(self.points)} rows")
            return self.points[rng.choice(len(self.points), size=n, replace=False)]
        return _SAMPLERS[self.name](n, rng)

    def sample_runs(self, runs: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """An independent data set of n points for each of `runs` runs, shape (runs, n, d).

        A file with n equal to its number of rows is the same data set for every run.
        """
        if self.is_file and n == len(self.points):
            return np.broadcast_to(self.points, (runs, n, self.dim)).copy()
        if self.is_gaussian:
            root = np.linalg.cholesky(self.cov)
            return self.mean + rng.standard_normal((runs, n, self.dim)) @ root.T
        return np.stack([self.sample(n, rng) for _ in range(runs)])

    def describe(self) -> str:
        """One line naming the data for reports: the file and its shape, N(0, Sigma) with its
        dimension and condition number, or the data set's name."""
        if self.is_file:
            return f"file {self.name} ({len(self.points)} x {self.dim})"
        if self.is_gaussian:
            return f"N(0, Sigma) in R^{self.dim}, cond(Sigma) = {self.cond:g}"
        return self.name


def _npy_header(p: Path) -> tuple[tuple, np.dtype]:
    """Shape and dtype a .npy file claims in its header, checked before anything is read.

    Refuses what is not a plain .npy array (an .npz archive or a pickle under a .npy name, a
    truncated file) and numbers that are not real (complex, strings, objects), so that the
    file is read only once it is known to be what it claims, with its size known.
    """
    try:
        with open(p, "rb") as f:
            if f.read(2) == b"PK":
                raise UsageError(
                    f"{str(p)!r} is an .npz archive, not a .npy array; save one array with numpy.save"
                )
            f.seek(0)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        size = p.stat().st_size
    except UsageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read {str(p)!r} as a .npy array: {exc}") from None
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise UsageError(f"data file {p.name} holds {dtype} values, not real numbers")
    need = math.prod(shape) * dtype.itemsize
    if size < offset + need:
        raise UsageError(
            f"data file {p.name} is truncated: its header claims shape {shape} ({need} bytes), "
            f"the file holds {size - offset}"
        )
    return tuple(shape), dtype


def load_points(path: str | Path, dim: int | None = None) -> np.ndarray:
    """Read a .npy file of shape (N, d) with N >= 2 finite rows; checks d against `dim`.

    A 1D array of shape (N,) is N points in dimension 1. The header is checked before the data
    are read (`_npy_header`): an archive or pickle under a .npy name, a truncated file, values
    that are not real numbers, a shape other than (N, d) with d >= 1, or an array larger than
    the memory available are refused with one line (UsageError).

    Returns
    -------
    numpy.ndarray, shape (N, d), float64
    """
    from stability.runs.resources import check_memory

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"data file {str(p)!r} does not exist")
    shape, dtype = _npy_header(p)
    if len(shape) not in (1, 2):
        raise UsageError(f"data file must hold an array of shape (N, d), got shape {shape}")
    if len(shape) == 2 and shape[1] == 0:
        raise UsageError(f"data file {p.name} has shape {shape}: its points have no coordinates")
    if shape[0] < 2:
        raise UsageError(f"data file must have at least 2 rows, got {shape[0]}")
    if dim is not None and (shape[1] if len(shape) == 2 else 1) != dim:
        d = shape[1] if len(shape) == 2 else 1
        raise UsageError(f"--dim {dim} does not match the data file's dimension {d}")
    # The file as read plus its float64 copy and the centred copy of the covariance.
    check_memory(
        3 * 8 * math.prod(shape), f"data file {p.name} of shape {shape}", "use a smaller file"
    )
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # any unreadable file is bad input
        raise UsageError(f"cannot read {str(p)!r} as a .npy array: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    return check_finite(arr, f"data file {p.name}")


def make_source(name: str, dim: int | None = None, cond: float = 1.0) -> DataSource:
    """A DataSource from a name of DATASETS or a .npy path; validates dim."""
    if name.endswith(".npy") or Path(name).suffix == ".npy":
        pts = load_points(name, dim)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = pts.mean(axis=0)
            cov = np.atleast_2d(np.cov(pts.T, ddof=0))
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            big = float(np.max(np.abs(pts)))
            raise UsageError(
                f"data file {Path(name).name}: its covariance overflows float64 (values up to "
                f"{big:.3g}); rescale the data"
            )
        smallest = np.linalg.eigvalsh(cov)[0]
        if smallest <= 0:
            raise UsageError("data file has a singular covariance (points on a subspace)")
        if smallest < np.finfo(float).tiny:
            # Subnormal variances have lost their precision; products of them vanish.
            raise UsageError(
                f"data file {Path(name).name}: its covariance underflows float64 (smallest "
                f"eigenvalue {smallest:.3g}); rescale the data"
            )
        return DataSource(name, pts.shape[1], mean, cov, points=pts)
    if name in TWO_D:
        if dim not in (None, 2):
            raise UsageError(f"data set {name!r} is 2-dimensional, got --dim {dim}")
        mean, cov = population_moments(name)
        return DataSource(name, 2, mean, cov)
    if name == "gaussian":
        d = 2 if dim is None else dim
        check_dim(d)
        if not (1.0 <= cond <= MAX_COND):
            raise UsageError(
                f"--data-cond must be a number in [1, {MAX_COND:g}], got {cond} (float64 loses "
                "the smallest eigenvalue of a covariance conditioned beyond that)"
            )
        mean, cov = population_moments(name, d, cond)
        return DataSource(name, d, mean, cov, cond=cond)
    raise UsageError(
        f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} or a .npy file"
    )


def check_sizes(n: int, runs: int, iterations: int) -> None:
    """Validate the common size options of the simulators (ValueError with one line)."""
    check_n(n, "n")
    check_n(runs, "runs", minimum=1)
    check_n(iterations, "iterations", minimum=1)


def check_seed(seed) -> None:
    """Validate a --seed: an integer >= 0 (numpy's SeedSequence refuses negative entropy)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"--seed must be an integer >= 0, got {seed!r}")
