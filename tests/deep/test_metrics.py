"""FID and improved precision/recall, against independent computations."""

import json
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from deep.features import pixels_extractor
from deep.metrics import (
    default_k,
    evaluate,
    feature_stats,
    fid_from_features,
    frechet_distance,
    kth_neighbour_sq,
    precision_recall,
)
from deep.metrics import fid as fid_mod
from stability.errors import RunError, UsageError


def random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def frechet_eig(mu1, s1, mu2, s2):
    """||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr((S1^1/2 S2 S1^1/2)^1/2), by eigendecompositions."""
    w, v = np.linalg.eigh(s1)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(half @ s2 @ half)
    cross = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)


def sample_stats(x):
    """Mean and unbiased covariance, written out (not np.cov)."""
    mu = x.sum(axis=0) / len(x)
    c = x - mu
    return mu, c.T @ c / (len(x) - 1)


# ---------------------------------------------------------------------------------------------
# FID


def test_feature_stats_shapes_and_ddof():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    mu, sigma = feature_stats(x)
    ref_mu, ref_sigma = sample_stats(x.astype(np.float64))
    assert mu.dtype == sigma.dtype == np.float64
    assert mu.shape == (4,) and sigma.shape == (4, 4)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-12)
    np.testing.assert_allclose(sigma, ref_sigma, rtol=1e-12)
    mu1, s1 = feature_stats(x[:, :1])
    assert mu1.shape == (1,) and s1.shape == (1, 1)


@pytest.mark.parametrize(
    "mu1, s1, mu2, s2, expected",
    [
        # W2^2 between N(0, 1) and N(10, 1) is 100 (FID is the squared distance).
        ([0.0], [[1.0]], [10.0], [[1.0]], 100.0),
        # Commuting covariances: sum of (sqrt(a) - sqrt(b))^2 over the diagonal.
        ([0.0, 0.0], np.diag([4.0, 9.0]), [1.0, 2.0], np.diag([1.0, 16.0]), 5 + 1 + 1),
    ],
)
def test_frechet_distance_closed_forms(mu1, s1, mu2, s2, expected):
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n, d", [(500, 8), (2000, 64), (60, 50)])
def test_fid_equals_eigen_formula_on_sample_stats(n, d):
    rng = np.random.default_rng(n + d)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = 2 * rng.normal(size=(n, d)) + 0.3
    expected = frechet_eig(*sample_stats(a), *sample_stats(b))
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-8)


def test_fid_of_gaussian_samples_matches_the_true_frechet_distance():
    rng = np.random.default_rng(1)
    d, n, runs = 3, 4000, 20
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 2.0])
    s1, s2 = random_spd(rng, d), random_spd(rng, d, scale=3.0)
    true = frechet_eig(mu1, s1, mu2, s2)
    l1, l2 = np.linalg.cholesky(s1), np.linalg.cholesky(s2)
    fids = np.array(
        [
            fid_from_features(
                mu1 + rng.normal(size=(n, d)) @ l1.T, mu2 + rng.normal(size=(n, d)) @ l2.T
            )
            for _ in range(runs)
        ]
    )
    se = fids.std(ddof=1) / np.sqrt(runs)
    # The plug-in estimator is biased by O(tr(S)/n): the mean term alone adds exactly
    # tr(S1 + S2)/n in expectation; allow twice that on top of 4 standard errors.
    bias = 2 * np.trace(s1 + s2) / n
    assert abs(fids.mean() - true) < 4 * se + bias, (fids.mean(), true, se, bias)


def test_fid_of_identical_sets_is_zero():
    x = np.random.default_rng(2).normal(size=(1000, 5)) * [1, 2, 3, 4, 5]
    assert abs(fid_from_features(x, x)) < 1e-10 * np.trace(np.cov(x, rowvar=False))


def test_singular_covariances_use_the_real_part_of_sqrtm(monkeypatch):
    """N < D: rank-deficient covariances; sqrtm returns round-off imaginary parts."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(20, 50)), rng.normal(size=(20, 50)) + 1
    seen = []
    real_sqrtm = fid_mod._sqrtm

    def spy(m):
        out = real_sqrtm(m)
        seen.append(np.iscomplexobj(out))
        return out

    monkeypatch.setattr(fid_mod, "_sqrtm", spy)
    fid = fid_from_features(a, b)
    assert seen == [True]
    # sqrt of round-off eigenvalues (~1e-16 relative) contributes ~1e-8 relative.
    assert fid == pytest.approx(frechet_eig(*sample_stats(a), *sample_stats(b)), rel=1e-7)


def test_non_finite_sqrtm_retries_with_eps_on_both_covariances(monkeypatch):
    rng = np.random.default_rng(4)
    s1, s2 = random_spd(rng, 4), random_spd(rng, 4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    calls = []
    real_sqrtm = fid_mod._sqrtm

    def failing_once(m):
        calls.append(m.copy())
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(fid_mod, "_sqrtm", failing_once)
    eps = 1e-3
    with pytest.warns(RuntimeWarning, match="adding 0.001"):
        fid = frechet_distance(mu1, s1, mu2, s2, eps=eps)
    assert len(calls) == 2
    offset = eps * np.eye(4)
    np.testing.assert_allclose(calls[1], (s1 + offset) @ (s2 + offset), rtol=1e-14)
    # The traces stay those of the original covariances; only the cross term moves.
    cross = np.trace(real_sqrtm((s1 + offset) @ (s2 + offset)).real)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross
    assert fid == pytest.approx(expected, rel=1e-12)


def test_scipy_non_finite_square_root_takes_the_eps_path():
    # A Jordan block with eigenvalue 0 has no square root (scipy returns inf); with the
    # offset, sigma1 + eps I = [[eps, 1], [0, eps]] and the product is a Jordan block with
    # eigenvalue lam = eps (1 + eps), whose square root has trace 2 sqrt(lam).
    eps = 1e-6
    with pytest.warns(RuntimeWarning, match="not finite"):
        fid = frechet_distance(np.zeros(2), [[0.0, 1.0], [0.0, 0.0]], np.zeros(2), np.eye(2))
    assert fid == pytest.approx(0 + 2 - 4 * np.sqrt(eps * (1 + eps)), rel=1e-9)


def test_large_imaginary_part_is_refused():
    # sigma2 is not positive semi-definite: sqrtm(diag(1, -1)) = diag(1, i). A refused square
    # root is a failure of the run (exit 1), not bad usage.
    with pytest.raises(RunError, match="imaginary component of 1"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -1.0]))


@pytest.mark.parametrize(
    "args",
    [
        (np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)),
        (np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)),
    ],
)
def test_frechet_distance_bad_input(args):
    with pytest.raises(UsageError):
        frechet_distance(*args)
    with pytest.raises(UsageError, match="eps"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), eps=-1.0)


@pytest.mark.parametrize("where", ["mu1", "sigma2"])
def test_frechet_distance_of_non_finite_statistics_is_a_run_failure(where):
    """Statistics are computed from features during a run: NaN there is a RunError (exit 1)."""
    args = {"mu1": np.zeros(2), "sigma1": np.eye(2), "mu2": np.zeros(2), "sigma2": np.eye(2)}
    args[where] = args[where].copy()
    args[where].flat[0] = np.nan
    with pytest.raises(RunError, match=f"{where} has non-finite values"):
        frechet_distance(**args)


def test_square_root_not_finite_even_with_eps_is_a_run_failure(monkeypatch):
    monkeypatch.setattr(fid_mod, "_sqrtm", lambda m: np.full_like(m, np.inf))
    with pytest.warns(RuntimeWarning, match="not finite"):
        with pytest.raises(RunError, match="not finite even with eps"):
            frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


def test_fid_from_features_bad_input():
    x = np.zeros((10, 3))
    with pytest.raises(UsageError, match="dimension"):
        fid_from_features(x, np.zeros((10, 4)))
    with pytest.raises(UsageError, match="at least 2"):
        fid_from_features(x, np.zeros((1, 3)))
    with pytest.raises(UsageError, match="shape"):
        fid_from_features(np.zeros(10), x)
    bad = np.ones((10, 3))
    bad[2, 0] = np.nan
    with pytest.raises(RunError, match="generated features has non-finite values"):
        fid_from_features(x, bad)


# ---------------------------------------------------------------------------------------------
# Improved precision and recall


def reference_precision_recall(real, gen, k, include_self):
    """Brute force with scipy's cdist (sqrt of sums of squared differences)."""

    def radii(x):
        d = cdist(x, x)
        np.fill_diagonal(d, 0.0 if include_self else np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    def inside(points, centres, r):
        d = cdist(points, centres)
        hit = d < r[None, :] if include_self else d <= r[None, :]
        return hit.any(axis=1).mean()

    return inside(gen, real, radii(real)), inside(real, gen, radii(gen))


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_brute_force(k, include_self):
    rng = np.random.default_rng(10 * k + include_self)
    real = rng.normal(size=(300, 5))
    gen = 1.3 * rng.normal(size=(250, 5)) + 0.4
    k += include_self  # k = 1 counting the point itself would give zero radii
    got = precision_recall(real, gen, k=k, include_self=include_self)
    assert got == reference_precision_recall(real, gen, k, include_self)
    assert 0 < got[0] < 1 and 0 < got[1] < 1


@pytest.mark.parametrize("include_self", [False, True])
def test_disjoint_supports_give_zero(include_self):
    rng = np.random.default_rng(5)
    real, gen = rng.random((400, 2)), rng.random((300, 2)) + [3.0, 0.0]
    k = 4 if include_self else 3
    assert precision_recall(real, gen, k=k, include_self=include_self) == (0.0, 0.0)


@pytest.mark.parametrize("include_self", [False, True])
def test_identical_sets_give_one(include_self):
    x = np.random.default_rng(6).normal(size=(500, 8))
    k = 4 if include_self else 3
    assert precision_recall(x, x.copy(), k=k, include_self=include_self) == (1.0, 1.0)


def test_partial_overlap_is_close_to_the_geometric_value():
    """Real uniform on [0, 1]^2, generated on [0.5, 1.5] x [0, 1]: both values are 1/2."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(7)
    n = 2000
    real = rng.random((n, 2))
    gen = rng.random((n, 2)) + [0.5, 0.0]
    precision, recall = precision_recall(real, gen)
    for value, points, centres, in_support in (
        (precision, gen, real, gen[:, 0] <= 1.0),
        (recall, real, gen, real[:, 0] >= 0.5),
    ):
        inside = in_support.mean()
        # The sample's own share of the overlap is binomial around 1/2.
        assert abs(inside - 0.5) < 4 * 0.5 / np.sqrt(n)
        # Upper bound, exact: a point is in a ball only if it lies within the largest radius
        # of the other support.
        r_max = cKDTree(centres).query(centres, k=4)[0][:, 3].max()
        dist_out = (
            np.maximum(points[:, 0] - 1.0, 0.0)
            if centres is real
            else np.maximum(0.5 - points[:, 0], 0.0)
        )
        assert value <= np.mean(dist_out <= r_max)
        # Lower bound: the union of 3-NN balls leaves a scale-free ~2% of a 2-D support
        # uncovered (Monte-Carlo probing of the interior: 1.5-2.3% for seeds 0-4 at n = 2000),
        # so at least 96% of the points in the overlap are counted.
        assert value >= 0.96 * inside


def test_include_self_convention_on_a_hand_made_example():
    real = np.array([[0.0], [2.0], [10.0], [12.0]])
    gen = np.array([[4.0], [30.0], [33.0]])
    # Default, k = 1: each real radius is the nearest other real point, 2. The generated 4 is
    # at distance exactly 2 from the real 2: inside with "<=". Generated radii: 26, 3, 3;
    # every real point is within 26 of the generated 4.
    assert precision_recall(real, gen, k=1) == (1 / 3, 1.0)
    # include_self, k = 2: the 2nd nearest counting the point itself is the same neighbour,
    # but "<" leaves the generated 4 on the boundary outside.
    assert precision_recall(real, gen, k=2, include_self=True) == (0.0, 1.0)
    # include_self, k = 1: the nearest point is the point itself, every radius is 0.
    assert precision_recall(real, gen, k=1, include_self=True) == (0.0, 0.0)


def test_default_k3_equals_include_self_k4_without_ties():
    rng = np.random.default_rng(8)
    real, gen = rng.normal(size=(400, 3)), rng.normal(size=(350, 3)) + 0.5
    assert precision_recall(real, gen, k=3) == precision_recall(real, gen, k=4, include_self=True)


def test_results_do_not_depend_on_batch():
    rng = np.random.default_rng(9)
    real, gen = rng.normal(size=(701, 16)), 1.1 * rng.normal(size=(523, 16)) + 0.2
    results = {b: precision_recall(real, gen, k=3, batch=b) for b in (1, 7, 129, 300, 10000)}
    assert len(set(results.values())) == 1, results
    # The radii themselves are bit-identical, not just the counts.
    r_small = kth_neighbour_sq(real, 3, batch=128)
    r_large = kth_neighbour_sq(real, 3, batch=10112)
    assert np.array_equal(r_small, r_large)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be"),
        ({"k": 2.5}, "k must be"),
        ({"batch": 0}, "batch must be"),
        ({"k": 10}, "at least 11 points"),
    ],
)
def test_precision_recall_bad_input(kwargs, match):
    x = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(UsageError, match=match):
        precision_recall(x, x, **kwargs)


def test_precision_recall_rejects_mismatched_or_non_finite_features():
    x = np.zeros((10, 2))
    with pytest.raises(UsageError, match="dimension"):
        precision_recall(x, np.zeros((10, 3)))
    bad = np.ones((10, 2))
    bad[3, 1] = np.inf
    # Features come from a network during the run: non-finite ones are a run failure.
    with pytest.raises(RunError, match="non-finite"):
        precision_recall(x, bad)
    # Finite features whose squared distances overflow float64 cannot be compared.
    huge = np.random.default_rng(1).normal(size=(10, 2)) * 1e160
    with pytest.raises(RunError, match="overflow"):
        precision_recall(huge, huge)


# ---- every decision as the direct computation makes it, whatever the offset ----------------


def direct_sq_dists(a, b):
    """Squared distances (len(a), len(b)) summed from coordinate differences: no expansion."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)


def direct_precision_recall(real, gen, k, include_self):
    """O(N M D) reference: k-NN radii and ball tests on direct squared differences."""

    def radii(x):
        d = direct_sq_dists(x, x)
        np.fill_diagonal(d, 0.0 if include_self else np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    def inside(points, centres, r2):
        d = direct_sq_dists(points, centres)
        hit = d < r2[None, :] if include_self else d <= r2[None, :]
        return float(hit.any(axis=1).mean())

    return inside(gen, real, radii(real)), inside(real, gen, radii(gen))


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1e4, 1e8, 1e12])
def test_integer_features_give_the_same_values_at_any_offset(offset, include_self):
    """Integer coordinates shifted by integers up to 7e12 (< 2^53) stay exact, and so do their
    squared distances: precision and recall may not move at all, ties (many, on a small integer
    grid) included. The squared-norm expansion gave (1.0, 1.0) from offset 1e8 on."""
    rng = np.random.default_rng(11)
    real = rng.integers(0, 40, size=(300, 4)).astype(np.float64)
    gen = rng.integers(5, 45, size=(250, 4)).astype(np.float64)
    shift = offset * np.array([1.0, -3.0, 7.0, 2.0])
    k = default_k(include_self)
    expected = direct_precision_recall(real, gen, k, include_self)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(real + shift, gen + shift, include_self=include_self) == expected


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("offset", [1e4, 1e8, 1e10, 1e12])
def test_precision_recall_equals_the_direct_computation_at_large_offsets(offset, include_self):
    rng = np.random.default_rng(12)
    base_real = rng.normal(size=(300, 5))
    base_gen = 1.3 * rng.normal(size=(250, 5)) + 0.4
    real, gen = base_real + offset, base_gen + offset
    k = default_k(include_self)
    got = precision_recall(real, gen, include_self=include_self)
    assert got == direct_precision_recall(real, gen, k, include_self)
    if offset <= 1e8:
        # The shift rounds each coordinate by at most 7.5e-9 (half an ulp of 1e8): only a point
        # that close to a ball's boundary could change side, so the unshifted values stay.
        assert got == precision_recall(base_real, base_gen, include_self=include_self)


@pytest.mark.parametrize("include_self", [False, True])
def test_precision_recall_is_exact_when_centring_cannot_remove_the_offset(include_self):
    """Two clusters 2e8 apart: the common mean lies between them, the centred features keep
    norms ~1e8 and the expanded distances inside a cluster are noise, so every decision there
    must come from the direct differences. Balls of one cluster never reach the other, so the
    counts are the sums of the counts of each cluster taken alone."""
    rng = np.random.default_rng(13)
    far = np.array([1e8, -2e8, 0.0, 5e7])
    real = rng.normal(size=(200, 4))
    gen = 1.2 * rng.normal(size=(180, 4)) + 0.3
    real[100:] += far
    gen[90:] += far
    k = default_k(include_self)
    got = precision_recall(real, gen, include_self=include_self)
    assert got == direct_precision_recall(real, gen, k, include_self)
    near = precision_recall(real[:100], gen[:90], include_self=include_self)
    away = precision_recall(real[100:] - far, gen[90:] - far, include_self=include_self)
    assert round(got.precision * 180) == round(near.precision * 90) + round(away.precision * 90)
    assert round(got.recall * 200) == round(near.recall * 100) + round(away.recall * 100)
    assert 0 < got.precision < 1 and 0 < got.recall < 1


def test_radii_equal_the_direct_kth_neighbour_distances():
    rng = np.random.default_rng(15)
    x = rng.normal(size=(257, 6)) * [1, 2, 3, 4, 5, 6] + 1e9
    for k, include_self in ((1, False), (3, False), (4, True)):
        d = direct_sq_dists(x, x)
        np.fill_diagonal(d, 0.0 if include_self else np.inf)
        expected = np.sort(d, axis=1)[:, k - 1]
        got = kth_neighbour_sq(x, k, include_self=include_self, batch=100)
        np.testing.assert_array_equal(got, expected)


def test_include_self_defaults_to_k4_the_prdc_convention():
    """prdc's nearest_k = 3 is k = 4 counting the point itself; k = 3 was the old default."""
    rng = np.random.default_rng(14)
    real, gen = rng.normal(size=(300, 3)), 1.2 * rng.normal(size=(260, 3)) + 0.3
    k3 = precision_recall(real, gen, k=3, include_self=True)
    k4 = precision_recall(real, gen, k=4, include_self=True)
    assert k3 != k4  # the default is observable on these sets
    assert precision_recall(real, gen, include_self=True) == k4
    assert precision_recall(real, gen) == precision_recall(real, gen, k=3)
    assert (default_k(False), default_k(True)) == (3, 4)


# ---------------------------------------------------------------------------------------------
# evaluate


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from deep.data import load_images

    return load_images("digits")


def test_evaluate_returns_the_metrics(digits):
    small = digits.images[:, :, ::4, ::4].copy()  # 64 pixels: a quick feature space
    real, gen = small[:600], small[600:1000]
    ext = pixels_extractor()
    out = evaluate(real, gen, ext)
    assert set(out) == {"fid", "precision", "recall", "n_real", "n_generated"}
    fr, fg = ext(real), ext(gen)
    assert out["fid"] == fid_from_features(fr, fg)
    assert (out["precision"], out["recall"]) == precision_recall(fr, fg)
    assert (out["n_real"], out["n_generated"]) == (600, 400)
    assert evaluate(None, gen, ext, real_features=fr) == out
    assert evaluate(real, gen, ext, k=4, include_self=True)["precision"] == pytest.approx(
        out["precision"], abs=0.02
    )
    with pytest.raises(UsageError, match="600 real features for 5 real images"):
        evaluate(real[:5], gen, ext, real_features=fr)


def test_evaluate_is_clean_under_warnings_as_errors(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = digits.images[:500, :, ::4, ::4].copy()
        evaluate(small[:300], small[300:], pixels_extractor())


def test_evaluate_include_self_defaults_to_k4(digits):
    small = digits.images[:, :, ::4, ::4].copy()
    real, gen = small[:400], small[400:700]
    ext = pixels_extractor()
    fr, fg = ext(real), ext(gen)
    out = evaluate(real, gen, ext, include_self=True)
    assert (out["precision"], out["recall"]) == precision_recall(fr, fg, k=4, include_self=True)
    assert evaluate(real, gen, ext, k=3, include_self=True)["recall"] == pytest.approx(
        precision_recall(fr, fg, k=3, include_self=True).recall, abs=0
    )


def test_evaluate_command_include_self_means_k4_unless_k_is_given(tmp_path, capsys):
    """`stability deep evaluate --include-self` is prdc's convention (k = 4), `--k` overrides."""
    from deep.data import load_images, save_zip
    from stability.app.deep_images import main_evaluate

    # 8 x 8 images: 64 pixel features keep FID's matrix square root quick.
    real = load_images("digits:8", limit=300)
    save_zip(load_images("digits:8").images[300:560], tmp_path / "gen.zip")
    gen = load_images(f"zip={tmp_path / 'gen.zip'}")
    ext = pixels_extractor()
    fr, fg = ext(real.images), ext(gen.images)
    expected = {k: precision_recall(fr, fg, k=k, include_self=True) for k in (3, 4)}
    assert expected[3] != expected[4]
    base = ["--real", "digits:8", "--n-real", "300", "--generated", str(tmp_path / "gen.zip")]
    base += ["--features", "pixels", "--include-self", "--json"]
    for extra, k in (([], 4), (["--k", "3"], 3)):
        assert main_evaluate(base + extra) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["precision"], out["recall"]) == expected[k]
