"""Feature extractors: the protocol, pixels, callables, FID's Inception-v3 and the digits CNN."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from scipy.spatial.distance import cdist  # noqa: E402

from deep.data import ImageDataset  # noqa: E402
from deep.features import (  # noqa: E402
    FeatureExtractor,
    callable_extractor,
    make_extractor,
    pixels_extractor,
)
from deep.features import digits as digits_mod  # noqa: E402
from deep.features.digits import digits_extractor  # noqa: E402
from deep.features.inception import InceptionV3FID, inception_extractor  # noqa: E402
from stability.errors import RunError, UsageError  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # On a shared 2-core machine, oversubscribed intra-op threads make these small forward
    # passes up to ten times slower; one thread also keeps the numbers machine-independent.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


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
    with pytest.raises(UsageError, match="dimension 64, expected 192"):
        ext(images(2, c=1))


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 1, 4, 4), np.float32), np.zeros((2, 2, 4, 4), np.uint8), [1, 2]]
)
def test_extractor_rejects_bad_images(bad):
    with pytest.raises(UsageError, match="images must"):
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
    with pytest.raises(UsageError, match="expected 4"):
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


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_are_a_run_failure(bad):
    """Images were accepted; a network that outputs NaN or inf failed during the run."""
    ext = callable_extractor(lambda x: np.full((len(x), 2), bad), "broken")
    with pytest.raises(RunError, match="broken: non-finite features"):
        ext(images(3))
    with pytest.raises(RunError, match="non-finite"):
        FeatureExtractor("known", lambda x: x).remember(images(2), np.full((2, 2), bad))


def test_wrong_number_of_feature_rows_is_refused():
    ext = FeatureExtractor("short", lambda x: np.zeros((len(x) - 1, 2)))
    with pytest.raises(UsageError, match=r"features must have shape \(4, D\), got \(3, 2\)"):
        ext(images(4))


def test_importing_the_metrics_and_features_packages_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, deep.features, deep.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


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
    with pytest.raises(UsageError, match="does not match") as err:
        inception_extractor(tmp_path / "bad.pth")
    assert "\n" not in str(err.value)


def test_inception_missing_or_unsafe_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        inception_extractor(tmp_path / "nope.pth")
    torch.save({"not": object}, tmp_path / "unsafe.pth")  # a pickled class: refused
    with pytest.raises(UsageError, match="weights_only"):
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

    monkeypatch.setattr(digits_mod, "_train_digits_net", no_training)
    second = digits_extractor(digits, cache)
    assert not second.info["trained"] and second.name == first.name
    np.testing.assert_array_equal(second(digits.images), first(digits.images))
    # Generated images go through the loaded network and agree with the trained one.
    x = digits.images[:50][:, :, ::-1].copy()
    np.testing.assert_array_equal(second(x), first(x))


@pytest.fixture
def quick_training(monkeypatch):
    monkeypatch.setattr(digits_mod, "_DIGITS_STEPS", 30)
    calls = []
    real = digits_mod._train_digits_net

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(digits_mod, "_train_digits_net", counted)
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
    labels_1d, _ = digits_mod._training_labels(digits.subset(slice(0, 150)), 0)
    labels_2d, _ = digits_mod._training_labels(ImageDataset(digits.images[:150], "d", one_hot), 0)
    np.testing.assert_array_equal(labels_1d, labels_2d)


def test_digits_features_refuse_other_image_shapes(digits_cache):
    with pytest.raises(UsageError, match="trained on images of shape"):
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
    with pytest.raises(UsageError, match=match) as err:
        make_extractor(spec)
    assert "\n" not in str(err.value)


def test_make_extractor_builds_each_kind(inception_weights, digits, digits_cache):
    assert make_extractor("pixels").name == "pixels"
    assert make_extractor(f"inception={inception_weights[0]}").dim == 2048
    cache, first = digits_cache
    assert make_extractor("digits", real=digits, cache_dir=cache).name == first.name
    with pytest.raises(UsageError, match="does not exist"):
        make_extractor(f"inception={cache / 'missing.pth'}")
