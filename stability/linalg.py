"""Batched linear algebra for symmetric matrices: square roots, coordinates, random SPD matrices.

Coordinates of a symmetric d x d matrix P used across the project (Proposition 2):
- "full":  vec(P), all d^2 entries as independent coordinates (column-major);
- "svec":  the orthonormal basis of symmetric matrices {E_ii} U {(E_ij + E_ji)/sqrt 2, i < j},
           an isometry for the Frobenius norm (d(d+1)/2 coordinates);
- "vech":  the d(d+1)/2 distinct entries P_ij, i >= j, each counted once.
"""

from __future__ import annotations

import numpy as np


def sym(a: np.ndarray) -> np.ndarray:
    """Symmetric part (a + a^T)/2 of a batch of square matrices, shape (..., d, d)."""
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def sqrtm_psd(a: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Principal power a^power of symmetric PSD matrices via eigh, shape (..., d, d) -> same.

    Negative round-off eigenvalues are clipped to 0 before taking the power.
    """
    w, v = np.linalg.eigh(sym(np.asarray(a, dtype=float)))
    w = np.clip(w, 0.0, None) ** power
    return (v * w[..., None, :]) @ np.swapaxes(v, -1, -2)


def inv_spd(a: np.ndarray) -> np.ndarray:
    """Inverse of SPD matrices via eigh (symmetric result), shape (..., d, d) -> same."""
    w, v = np.linalg.eigh(sym(np.asarray(a, dtype=float)))
    return (v / w[..., None, :]) @ np.swapaxes(v, -1, -2)


def random_spd(d: int, cond: float, rng: np.random.Generator) -> np.ndarray:
    """A random SPD matrix with condition number exactly cond and a Haar-random eigenbasis.

    Eigenvalues are log-uniform between 1/sqrt(cond) and sqrt(cond) with both ends attained
    (d >= 2), so the matrix is strongly anisotropic for large cond. Shape (d, d).
    """
    if d == 1:
        return np.array([[float(np.exp(rng.uniform(-1, 1)))]])
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))  # Haar measure on O(d)
    logs = rng.uniform(-0.5, 0.5, size=d) * np.log(cond)
    logs[0], logs[-1] = -0.5 * np.log(cond), 0.5 * np.log(cond)
    return sym((q * np.exp(logs)) @ q.T)


def svec_basis(d: int) -> np.ndarray:
    """Orthonormal basis of symmetric d x d matrices, shape (d(d+1)/2, d, d)."""
    basis = []
    for j in range(d):
        for i in range(j, d):
            e = np.zeros((d, d))
            if i == j:
                e[i, i] = 1.0
            else:
                e[i, j] = e[j, i] = 1.0 / np.sqrt(2.0)
            basis.append(e)
    return np.array(basis)


def svec(a: np.ndarray) -> np.ndarray:
    """svec coordinates of symmetric matrices, shape (..., d, d) -> (..., d(d+1)/2)."""
    d = a.shape[-1]
    return np.einsum("...ij,kij->...k", a, svec_basis(d))


def smat(v: np.ndarray) -> np.ndarray:
    """Inverse of svec, shape (..., d(d+1)/2) -> (..., d, d)."""
    p = v.shape[-1]
    d = int(round((np.sqrt(8 * p + 1) - 1) / 2))
    return np.einsum("...k,kij->...ij", v, svec_basis(d))


def duplication_matrix(d: int) -> np.ndarray:
    """D with vec(P) = D vech(P) for symmetric P (Magnus & Neudecker), shape (d^2, d(d+1)/2)."""
    cols = []
    for j in range(d):
        for i in range(j, d):
            e = np.zeros((d, d))
            e[i, j] = e[j, i] = 1.0
            cols.append(e.reshape(-1, order="F"))
    return np.array(cols).T


def vech(a: np.ndarray) -> np.ndarray:
    """Distinct entries a_ij (i >= j, column by column), shape (..., d, d) -> (..., d(d+1)/2)."""
    d = a.shape[-1]
    rows, cols = [], []
    for j in range(d):
        for i in range(j, d):
            rows.append(i)
            cols.append(j)
    return a[..., rows, cols]
