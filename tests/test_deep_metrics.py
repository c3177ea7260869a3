"""FID, improved precision/recall and the feature extractors, against independent computations."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from scipy.spatial.distance import cdist  # noqa: E402

from deep import metrics as dm  # noqa: E402
from deep.data import ImageDataset  # noqa: E402
from deep.metrics import (  # noqa: E402
    FeatureExtractor,
    InceptionV3FID,
    callable_extractor,
    digits_extractor,
    evaluate,
    feature_stats,
    fid_from_features,
    frechet_distance,
    inception_extractor,
    make_extractor,
    pixels_extractor,
    precision_recall,
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # On a shared 2-core machine, oversubscribed intra-op threads make these small forward
    # passes up to ten times slower; one thread also keeps the numbers machine-independent.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


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
    real_sqrtm = dm._sqrtm

    def spy(m):
        out = real_sqrtm(m)
        seen.append(np.iscomplexobj(out))
        return out

    monkeypatch.setattr(dm, "_sqrtm", spy)
    fid = fid_from_features(a, b)
    assert seen == [True]
    # sqrt of round-off eigenvalues (~1e-16 relative) contributes ~1e-8 relative.
    assert fid == pytest.approx(frechet_eig(*sample_stats(a), *sample_stats(b)), rel=1e-7)


def test_non_finite_sqrtm_retries_with_eps_on_both_covariances(monkeypatch):
    rng = np.random.default_rng(4)
    s1, s2 = random_spd(rng, 4), random_spd(rng, 4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    calls = []
    real_sqrtm = dm._sqrtm

    def failing_once(m):
        calls.append(m.copy())
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(dm, "_sqrtm", failing_once)
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
    # sigma2 is not positive semi-definite: sqrtm(diag(1, -1)) = diag(1, i).
    with pytest.raises(ValueError, match="imaginary component of 1"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -1.0]))


@pytest.mark.parametrize(
    "args",
    [
        (np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)),
        (np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)),
        (np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2)),
    ],
)
def test_frechet_distance_bad_input(args):
    with pytest.raises(ValueError):
        frechet_distance(*args)


def test_fid_from_features_bad_input():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="dimension"):
        fid_from_features(x, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(x, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="shape"):
        fid_from_features(np.zeros(10), x)


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
    sq = dm._sq_norms(real)
    r_small = dm._kth_neighbour_sq(real, sq, 3, False, 128)
    r_large = dm._kth_neighbour_sq(real, sq, 3, False, 10112)
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
    with pytest.raises(ValueError, match=match):
        precision_recall(x, x, **kwargs)


def test_precision_recall_rejects_mismatched_or_non_finite_features():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="dimension"):
        precision_recall(x, np.zeros((10, 3)))
    bad = np.ones((10, 2))
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        precision_recall(x, bad)


# ---------------------------------------------------------------------------------------------
# Extractors: generic, pixels, callables


def images(n, c=1, side=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, side, side), dtype=np.uint8)


def test_pixels_extractor():
    ext = pixels_extractor()
    assert ext.dim is None
    x = images(5, c=3)
    f = ext(x)
    assert f.shape == (5, 3 * 64) and f.dtype == np.float64 and ext.dim == 192
    np.testing.assert_array_equal(f, x.reshape(5, -1) / 255.0)
    with pytest.raises(ValueError, match="dimension 64, expected 192"):
        ext(images(2, c=1))


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 1, 4, 4), np.float32), np.zeros((2, 2, 4, 4), np.uint8), [1, 2]]
)
def test_extractor_rejects_bad_images(bad):
    with pytest.raises(ValueError, match="images must"):
        pixels_extractor()(bad)


def test_callable_extractor_numpy_function_batches():
    seen = []

    def fn(x):
        seen.append((x.dtype, x.shape, float(x.min()), float(x.max())))
        return x.mean(axis=(2, 3))

    ext = callable_extractor(fn, "channel-means", dim=3, batch=3)
    x = images(7, c=3)
    f = ext(x)
    assert f.shape == (7, 3) and f.dtype == np.float64
    np.testing.assert_allclose(f, x.mean(axis=(2, 3)) / 255.0, rtol=1e-6)
    assert [s[1][0] for s in seen] == [3, 3, 1]
    assert all(dt == np.float32 and 0 <= lo and hi <= 1 for dt, _, lo, hi in seen)
    with pytest.raises(ValueError, match="expected 4"):
        callable_extractor(fn, "x", dim=4)(x)


def test_callable_extractor_torch_module():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(5),
    )
    net(torch.rand(2, 1, 8, 8))  # materialise the lazy layer
    ext = callable_extractor(net, "tiny", batch=4)
    assert not net.training  # BatchNorm must use its running statistics
    x = images(10)
    f = ext(x)
    assert f.shape == (10, 5) and ext.dim == 5 and ext.module is net
    with torch.no_grad():
        expected = net(torch.from_numpy(x).float() / 255).double().numpy()
    np.testing.assert_allclose(f, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f, ext(x))


def test_remembered_features_skip_the_network():
    calls = []
    ext = FeatureExtractor("count", lambda x: calls.append(len(x)) or np.zeros((len(x), 2)))
    x = images(4)
    ext.remember(x, np.ones((4, 2)))
    np.testing.assert_array_equal(ext(x), np.ones((4, 2)))
    assert calls == []
    ext(images(4, seed=1))
    assert calls == [4]


# ---------------------------------------------------------------------------------------------
# Inception-v3 of FID


def conv_table():
    """(module prefix, conv weight shape) of all 94 convolutions, written from the published
    architecture (torchvision's Inception3 and pytorch-fid's FID blocks), independently of
    deep.metrics."""
    t = {
        "Conv2d_1a_3x3": (32, 3, 3, 3),
        "Conv2d_2a_3x3": (32, 32, 3, 3),
        "Conv2d_2b_3x3": (64, 32, 3, 3),
        "Conv2d_3b_1x1": (80, 64, 1, 1),
        "Conv2d_4a_3x3": (192, 80, 3, 3),
    }
    for name, cin, pool in (("5b", 192, 32), ("5c", 256, 64), ("5d", 288, 64)):
        p = f"Mixed_{name}."
        t |= {
            p + "branch1x1": (64, cin, 1, 1),
            p + "branch5x5_1": (48, cin, 1, 1),
            p + "branch5x5_2": (64, 48, 5, 5),
            p + "branch3x3dbl_1": (64, cin, 1, 1),
            p + "branch3x3dbl_2": (96, 64, 3, 3),
            p + "branch3x3dbl_3": (96, 96, 3, 3),
            p + "branch_pool": (pool, cin, 1, 1),
        }
    t |= {
        "Mixed_6a.branch3x3": (384, 288, 3, 3),
        "Mixed_6a.branch3x3dbl_1": (64, 288, 1, 1),
        "Mixed_6a.branch3x3dbl_2": (96, 64, 3, 3),
        "Mixed_6a.branch3x3dbl_3": (96, 96, 3, 3),
    }
    for name, c7 in (("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)):
        p = f"Mixed_{name}."
        t |= {
            p + "branch1x1": (192, 768, 1, 1),
            p + "branch7x7_1": (c7, 768, 1, 1),
            p + "branch7x7_2": (c7, c7, 1, 7),
            p + "branch7x7_3": (192, c7, 7, 1),
            p + "branch7x7dbl_1": (c7, 768, 1, 1),
            p + "branch7x7dbl_2": (c7, c7, 7, 1),
            p + "branch7x7dbl_3": (c7, c7, 1, 7),
            p + "branch7x7dbl_4": (c7, c7, 7, 1),
            p + "branch7x7dbl_5": (192, c7, 1, 7),
            p + "branch_pool": (192, 768, 1, 1),
        }
    t |= {
        "Mixed_7a.branch3x3_1": (192, 768, 1, 1),
        "Mixed_7a.branch3x3_2": (320, 192, 3, 3),
        "Mixed_7a.branch7x7x3_1": (192, 768, 1, 1),
        "Mixed_7a.branch7x7x3_2": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_3": (192, 192, 7, 1),
        "Mixed_7a.branch7x7x3_4": (192, 192, 3, 3),
    }
    for name, cin in (("7b", 1280), ("7c", 2048)):
        p = f"Mixed_{name}."
        t |= {
            p + "branch1x1": (320, cin, 1, 1),
            p + "branch3x3_1": (384, cin, 1, 1),
            p + "branch3x3_2a": (384, 384, 1, 3),
            p + "branch3x3_2b": (384, 384, 3, 1),
            p + "branch3x3dbl_1": (448, cin, 1, 1),
            p + "branch3x3dbl_2": (384, 448, 3, 3),
            p + "branch3x3dbl_3a": (384, 384, 1, 3),
            p + "branch3x3dbl_3b": (384, 384, 3, 1),
            p + "branch_pool": (192, cin, 1, 1),
        }
    return t


def test_inception_state_dict_has_the_torchvision_names_and_shapes():
    sd = InceptionV3FID().state_dict()
    table = conv_table()
    assert len(table) == 94
    expected = {"fc.weight": (1008, 2048), "fc.bias": (1008,)}
    for prefix, shape in table.items():
        expected[f"{prefix}.conv.weight"] = shape
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            expected[f"{prefix}.bn.{leaf}"] = (shape[0],)
        expected[f"{prefix}.bn.num_batches_tracked"] = ()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    bns = [m for m in InceptionV3FID().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 94 and {m.eps for m in bns} == {0.001}
    assert not any(k.startswith("AuxLogits") for k in sd)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A state dict with the real file's names and shapes and non-default values."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, value in InceptionV3FID().state_dict().items():
        if key.endswith("conv.weight"):  # He initialisation keeps activations O(1)
            fan_in = value[0].numel()
            value = torch.randn(value.shape, generator=gen) * np.sqrt(2 / fan_in)
        elif key.endswith(("bn.weight", "running_var")):
            value = 0.5 + torch.rand(value.shape, generator=gen)
        elif key.endswith(("bn.bias", "running_mean")) or key.startswith("fc."):
            value = 0.1 * torch.randn(value.shape, generator=gen)
        state[key] = value
    path = tmp_path_factory.mktemp("inception") / "pt_inception-test.pth"
    torch.save(state, path)
    return path, state


def test_inception_weights_round_trip_strictly(inception_weights):
    path, state = inception_weights
    ext = inception_extractor(path)
    assert ext.name == "inception-2015-12-05" and ext.dim == 2048
    loaded = ext.module.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_inception_features_shape_gray_and_determinism(inception_weights):
    ext = inception_extractor(inception_weights[0], batch=2)
    gray = images(2, c=1, side=28, seed=3)
    f_gray = ext(gray)
    assert f_gray.shape == (2, 2048) and f_gray.dtype == np.float64
    assert np.isfinite(f_gray).all() and f_gray.std() > 1e-3
    # A gray image is the RGB image with three equal channels, computed the same way again.
    f_rgb = ext(np.repeat(gray, 3, axis=1))
    np.testing.assert_array_equal(f_gray, f_rgb)
    assert not np.allclose(f_gray[0], f_gray[1])


def test_inception_tolerates_missing_batch_counters(inception_weights, tmp_path):
    path, state = inception_weights
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, tmp_path / "old.pth")
    ext = inception_extractor(tmp_path / "old.pth")
    assert torch.equal(ext.module.state_dict()["fc.weight"], state["fc.weight"])


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape", "aux"])
def test_inception_rejects_a_mismatched_state_dict(inception_weights, tmp_path, change):
    state = dict(inception_weights[1])
    if change == "missing":
        del state["Mixed_6c.branch7x7_2.conv.weight"]
    elif change == "unexpected":
        state["extra.weight"] = torch.zeros(1)
    elif change == "shape":
        state["fc.weight"] = torch.zeros(1000, 2048)
    else:  # torchvision's own ImageNet weights carry an auxiliary classifier
        state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not match") as err:
        inception_extractor(tmp_path / "bad.pth")
    assert "\n" not in str(err.value)


def test_inception_missing_or_unsafe_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        inception_extractor(tmp_path / "nope.pth")
    torch.save({"not": object}, tmp_path / "unsafe.pth")  # a pickled class: refused
    with pytest.raises(ValueError, match="weights_only"):
        inception_extractor(tmp_path / "unsafe.pth")


# ---------------------------------------------------------------------------------------------
# Digits features


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from deep.data import load_images

    return load_images("digits")


@pytest.fixture(scope="module")
def digits_cache(digits, tmp_path_factory):
    """The real extractor, trained once on the 1797 digits with the default settings."""
    cache = tmp_path_factory.mktemp("digits-cache")
    return cache, digits_extractor(digits, cache)


def test_digits_features_separate_the_digits(digits, digits_cache):
    _, ext = digits_cache
    assert ext.info["trained"] and ext.info["labels"] == "labels"
    f = ext(digits.images)
    assert f.shape == (1797, 64) and ext.dim == 64
    # Nearest class mean in feature space: a useful feature space separates the classes.
    means = np.stack([f[digits.labels == c].mean(axis=0) for c in range(10)])
    predicted = np.argmin(cdist(f, means), axis=1)
    assert np.mean(predicted == digits.labels) > 0.9


def test_digits_cache_is_reused_without_training(digits, digits_cache, monkeypatch):
    cache, first = digits_cache
    assert sorted(p.suffix for p in cache.iterdir()) == [".npz", ".pt"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached network should have been loaded")

    monkeypatch.setattr(dm, "_train_digits_net", no_training)
    second = digits_extractor(digits, cache)
    assert not second.info["trained"] and second.name == first.name
    np.testing.assert_array_equal(second(digits.images), first(digits.images))
    # Generated images go through the loaded network and agree with the trained one.
    x = digits.images[:50][:, :, ::-1].copy()
    np.testing.assert_array_equal(second(x), first(x))


@pytest.fixture
def quick_training(monkeypatch):
    monkeypatch.setattr(dm, "_DIGITS_STEPS", 30)
    calls = []
    real = dm._train_digits_net

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dm, "_train_digits_net", counted)
    return calls


def test_digits_training_is_deterministic_given_the_seed(digits, quick_training):
    data = digits.subset(slice(0, 300))
    f0 = digits_extractor(data, None, seed=0)(data.images)
    f0_again = digits_extractor(data, None, seed=0)(data.images)
    f1 = digits_extractor(data, None, seed=1)(data.images)
    assert len(quick_training) == 3
    np.testing.assert_array_equal(f0, f0_again)
    assert not np.allclose(f0, f1)


def test_digits_cache_key_and_damaged_cache(digits, quick_training, tmp_path):
    data = digits.subset(slice(0, 200))
    first = digits_extractor(data, tmp_path)
    features = first(data.images)
    # Another seed or other images: another key, another training.
    assert digits_extractor(data, tmp_path, seed=1).name != first.name
    other = digits.subset(slice(1, 201))
    assert digits_extractor(other, tmp_path).name != first.name
    assert len(quick_training) == 3
    # Damaged features: recomputed from the cached weights, no training.
    npz = tmp_path / f"digits-{first.info['key']}.npz"
    npz.write_bytes(b"garbage")
    again = digits_extractor(data, tmp_path)
    assert not again.info["trained"] and len(quick_training) == 3
    np.testing.assert_array_equal(again(data.images), features)
    # Damaged weights: retrained (deterministically, so the same features).
    (tmp_path / f"digits-{first.info['key']}.pt").write_bytes(b"garbage")
    retrained = digits_extractor(data, tmp_path)
    assert retrained.info["trained"] and len(quick_training) == 4
    np.testing.assert_array_equal(retrained(data.images), features)


def test_digits_without_labels_uses_kmeans_pseudo_labels(digits, quick_training):
    unlabelled = ImageDataset(digits.images[:150], "digits")
    ext = digits_extractor(unlabelled, None)
    assert ext.info["labels"] == "kmeans"
    assert ext(unlabelled.images).shape == (150, 64)
    one_hot = np.eye(10)[digits.labels[:150]]
    labels_1d, _ = dm._training_labels(digits.subset(slice(0, 150)), 0)
    labels_2d, _ = dm._training_labels(ImageDataset(digits.images[:150], "d", one_hot), 0)
    np.testing.assert_array_equal(labels_1d, labels_2d)


def test_digits_features_refuse_other_image_shapes(digits_cache):
    with pytest.raises(ValueError, match="trained on images of shape"):
        digits_cache[1](images(3, c=1, side=16))


# ---------------------------------------------------------------------------------------------
# make_extractor and evaluate


@pytest.mark.parametrize(
    "spec, match",
    [
        ("inception", "weights file"),
        ("inception=", "weights file"),
        ("inceptionv3=/x", "unknown feature spec"),
        ("digits", "real images"),
        ("digits=3", "unknown feature spec"),
        ("pixel", "unknown feature spec"),
        ("", "feature spec must be"),
        (None, "feature spec must be"),
    ],
)
def test_make_extractor_errors(spec, match):
    with pytest.raises(ValueError, match=match) as err:
        make_extractor(spec)
    assert "\n" not in str(err.value)


def test_make_extractor_builds_each_kind(inception_weights, digits, digits_cache):
    assert make_extractor("pixels").name == "pixels"
    assert make_extractor(f"inception={inception_weights[0]}").dim == 2048
    cache, first = digits_cache
    assert make_extractor("digits", real=digits, cache_dir=cache).name == first.name
    with pytest.raises(ValueError, match="does not exist"):
        make_extractor(f"inception={cache / 'missing.pth'}")


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
    with pytest.raises(ValueError, match="600 real features for 5 real images"):
        evaluate(real[:5], gen, ext, real_features=fr)


def test_evaluate_is_clean_under_warnings_as_errors(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = digits.images[:500, :, ::4, ::4].copy()
        evaluate(small[:300], small[300:], pixels_extractor())
