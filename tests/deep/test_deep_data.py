"""Image data: digits, CIFAR-10 archives (fake ones built here), folders and zips, safe pickles."""

import io
import json
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from deep import data as dd  # noqa: E402
from deep.data import (  # noqa: E402
    ImageDataset,
    RestrictedUnpickler,
    load_images,
    save_png_folder,
    save_zip,
)
from deep.data import save as data_save  # noqa: E402

# ---------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return load_images("digits")


def test_digits_shape_dtype_and_value_span(digits):
    assert digits.images.shape == (1797, 1, 32, 32)
    assert digits.images.dtype == np.uint8
    assert digits.images.min() == 0 and digits.images.max() == 255
    assert digits.resolution == 32 and digits.channels == 1 and len(digits) == 1797
    assert digits.labels.shape == (1797,) and set(digits.labels) == set(range(10))


def test_digits_native_resolution_is_the_scaled_originals():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    raw = sklearn_datasets.load_digits().images
    d = load_images("digits:8")
    np.testing.assert_array_equal(d.images[:, 0], np.rint(raw * 255 / 16).astype(np.uint8))


@pytest.mark.parametrize("spec, kwargs", [("digits:16", {}), ("digits", {"resolution": 16})])
def test_digits_resolution(spec, kwargs):
    pytest.importorskip("sklearn")
    d = load_images(spec, limit=5, **kwargs)
    assert d.images.shape == (5, 1, 16, 16)


def test_digits_to_float_range(digits):
    x = digits.to_float()
    assert x.dtype == np.float32 and x.shape == digits.images.shape
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, digits.images / np.float32(127.5) - 1)


def test_digits_three_channels_replicate(digits):
    d3 = load_images("digits", channels=3, limit=10)
    assert d3.images.shape == (10, 3, 32, 32)
    for c in range(3):
        np.testing.assert_array_equal(d3.images[:, c], digits.images[:10, 0])


@pytest.mark.parametrize(
    "spec, kwargs",
    [
        ("digits:16", {"resolution": 32}),
        ("digits:x", {}),
        ("digits:0", {}),
        ("digits", {"limit": 0}),
    ],
)
def test_digits_bad_arguments(spec, kwargs):
    pytest.importorskip("sklearn")
    with pytest.raises(ValueError):
        load_images(spec, **kwargs)


# ---------------------------------------------------------------------------------------------
# CIFAR-10: fake archives in the official layouts

N_PER_BATCH = 3
N_BATCHES = 5


def cifar_pixel(i, c, y, x):
    """The value written at image i, channel c, row y, column x of the fake archives."""
    return (5 * i + 70 * c + 3 * y + x) % 256


def expected_cifar():
    i, c, y, x = np.indices((N_PER_BATCH * N_BATCHES, 3, 32, 32))
    labels = (np.arange(N_PER_BATCH * N_BATCHES) * 3) % 10
    return cifar_pixel(i, c, y, x).astype(np.uint8), labels


def image_rows(i):
    """Image i as the official formats store it: the R plane, then G, then B, each row-major."""
    planes = []
    for c in range(3):
        plane = bytes(cifar_pixel(i, c, y, x) for y in range(32) for x in range(32))
        planes.append(plane)
    return b"".join(planes)


def write_cifar_bin(folder):
    folder.mkdir(parents=True)
    _, labels = expected_cifar()
    for b in range(N_BATCHES):
        ids = range(b * N_PER_BATCH, (b + 1) * N_PER_BATCH)
        records = b"".join(bytes([labels[i]]) + image_rows(i) for i in ids)
        (folder / f"data_batch_{b + 1}.bin").write_bytes(records)
    (folder / "test_batch.bin").write_bytes(b"\xff" * 3073)  # the test split is never read
    return folder


def write_cifar_py(folder, dump=pickle.dumps):
    folder.mkdir(parents=True)
    _, labels = expected_cifar()
    for b in range(N_BATCHES):
        ids = range(b * N_PER_BATCH, (b + 1) * N_PER_BATCH)
        data = np.frombuffer(b"".join(image_rows(i) for i in ids), np.uint8).reshape(-1, 3072)
        batch = {b"batch_label": b"fake", b"data": data, b"labels": [int(labels[i]) for i in ids]}
        (folder / f"data_batch_{b + 1}").write_bytes(dump(batch))
    return folder


def make_tarball(folder, tarball):
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return tarball


LAYOUTS = {
    "py": ("cifar-10-batches-py", "cifar-10-python.tar.gz", write_cifar_py),
    "bin": ("cifar-10-batches-bin", "cifar-10-binary.tar.gz", write_cifar_bin),
}


@pytest.fixture(params=sorted(LAYOUTS))
def cifar_archive(request, tmp_path):
    """(format, extracted batches folder, tarball elsewhere) of a fake CIFAR-10 of 5 x 3 images."""
    folder_name, tar_name, write = LAYOUTS[request.param]
    folder = write(tmp_path / "extracted" / folder_name)
    (tmp_path / "packed").mkdir()
    tarball = make_tarball(folder, tmp_path / "packed" / tar_name)
    return request.param, folder, tarball


@pytest.mark.parametrize(
    "where", ["tarball", "batches folder", "parent folder", "folder with tarball"]
)
@pytest.mark.parametrize("prefix", ["cifar10=", ""])
def test_cifar_fake_archive_pixels_and_labels(cifar_archive, where, prefix):
    _, folder, tarball = cifar_archive
    path = {
        "tarball": tarball,
        "batches folder": folder,
        "parent folder": folder.parent,
        "folder with tarball": tarball.parent,
    }[where]
    d = load_images(f"{prefix}{path}")
    images, labels = expected_cifar()
    assert d.images.dtype == np.uint8 and d.images.shape == (N_BATCHES * N_PER_BATCH, 3, 32, 32)
    np.testing.assert_array_equal(d.images, images)
    np.testing.assert_array_equal(d.labels, labels)
    assert d.name == "cifar10" and d.resolution == 32 and d.channels == 3
    assert d.images[8, 2, 4, 5] == (5 * 8 + 70 * 2 + 3 * 4 + 5) % 256  # CHW, row-major


def test_cifar_limit_spans_batches(cifar_archive):
    _, folder, _ = cifar_archive
    d = load_images(f"cifar10={folder}", limit=9)
    images, labels = expected_cifar()
    np.testing.assert_array_equal(d.images, images[:9])
    np.testing.assert_array_equal(d.labels, labels[:9])


def test_cifar_gray_is_pillows_luma(cifar_archive):
    _, folder, _ = cifar_archive
    d = load_images(f"cifar10={folder}", channels=1)
    images, _ = expected_cifar()
    pil = [np.asarray(Image.fromarray(im.transpose(1, 2, 0)).convert("L")) for im in images]
    np.testing.assert_array_equal(d.images[:, 0], np.stack(pil))


def test_cifar_resolution_mismatch(cifar_archive):
    _, folder, _ = cifar_archive
    with pytest.raises(ValueError, match="32x32, not 64x64"):
        load_images(f"cifar10={folder}", resolution=64)


class Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 strings, as cPickle did for the official batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def py2_style_dumps(obj):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # The official files name numpy 1's module; numpy 2 writes numpy._core.
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


@pytest.mark.parametrize(
    "dump",
    [
        py2_style_dumps,
        lambda obj: pickle.dumps(obj, protocol=4),
        lambda obj: pickle.dumps(obj, protocol=5),
    ],
    ids=["python2-cpickle", "protocol4", "protocol5"],
)
def test_cifar_python_batches_of_every_pickle_flavour(tmp_path, dump):
    folder = write_cifar_py(tmp_path / "cifar-10-batches-py", dump=dump)
    d = load_images(f"cifar10={folder}")
    images, labels = expected_cifar()
    np.testing.assert_array_equal(d.images, images)
    np.testing.assert_array_equal(d.labels, labels)


def test_py2_style_pickle_really_uses_the_old_format():
    raw = py2_style_dumps({b"data": np.zeros((1, 3), np.uint8)})
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"U\x04data" in raw


CALLS = []


def record_call(*args):
    CALLS.append(args)
    return args


class Sneaky:
    def __reduce__(self):
        return (record_call, ("pwned",))


def test_restricted_unpickler_refuses_other_globals():
    with pytest.raises(ValueError, match=r"^refusing to unpickle (posix|nt)\.system"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(os.system)), encoding="bytes").load()
    CALLS.clear()
    with pytest.raises(
        ValueError, match=r"^refusing to unpickle tests\.deep\.test_deep_data\.record"
    ):
        RestrictedUnpickler(io.BytesIO(pickle.dumps([1, Sneaky()]))).load()
    assert CALLS == []
    pickle.loads(pickle.dumps(Sneaky()))  # the payload does run under the plain unpickler
    assert CALLS == [("pwned",)]


def test_restricted_unpickler_refuses_builtins_and_numpy_extras():
    for obj in (eval, np.load, np.lib.format.open_memmap):
        with pytest.raises(ValueError, match="refusing to unpickle"):
            RestrictedUnpickler(io.BytesIO(pickle.dumps(obj))).load()


@pytest.mark.parametrize("packed", [False, True])
def test_malicious_cifar_batch_is_refused(tmp_path, packed):
    CALLS.clear()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": Sneaky()}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))
    benign = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}
    for i in range(2, 6):  # the loader wants all five batches before it parses any
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(benign))
    path = make_tarball(folder, tmp_path / "cifar-10-python.tar.gz") if packed else folder
    with pytest.raises(ValueError, match="refusing to unpickle .*data_batch_1"):
        load_images(f"cifar10={path}")
    assert CALLS == []


def test_cifar_bad_archives(tmp_path):
    folder = write_cifar_bin(tmp_path / "gap")
    os.rename(folder / "data_batch_2.bin", folder / "data_batch_3.bin")
    with pytest.raises(ValueError, match="data_batch_2 is missing"):
        load_images(f"cifar10={folder}")

    short = write_cifar_bin(tmp_path / "short")
    with open(short / "data_batch_2.bin", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ValueError, match="whole number of 3073-byte records"):
        load_images(f"cifar10={short}")

    garbled = write_cifar_py(tmp_path / "garbled")
    (garbled / "data_batch_1").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        load_images(f"cifar10={garbled}")

    wrong = write_cifar_py(tmp_path / "wrong")
    (wrong / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.uint8)}))
    with pytest.raises(ValueError, match="not \\(n, 3072\\)"):
        load_images(f"cifar10={wrong}")

    empty_tar = tmp_path / "empty.tar.gz"
    with tarfile.open(empty_tar, "w:gz"):
        pass
    with pytest.raises(ValueError, match="no CIFAR-10"):
        load_images(f"cifar10={empty_tar}")

    not_tar = tmp_path / "cifar-10-python.tar.gz"
    not_tar.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read the tarball"):
        load_images(f"cifar10={not_tar}")

    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ValueError, match="no CIFAR-10 training batches"):
        load_images(f"cifar10={plain}")


# ---------------------------------------------------------------------------------------------
# folders and zips


def random_images(n, c, side, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, side, side), dtype=np.uint8)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("prefix", ["folder=", "ffhq=", ""])
def test_png_folder_round_trip(tmp_path, c, prefix):
    images = random_images(5, c, 8)
    out = save_png_folder(images, tmp_path / "samples")
    assert out == tmp_path / "samples"
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert os.listdir(tmp_path) == ["samples"]  # no temporary folder left behind
    d = load_images(f"{prefix}{out}")
    np.testing.assert_array_equal(d.images, images)
    assert d.labels is None
    assert d.name == ("ffhq" if prefix == "ffhq=" else "samples")


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("prefix", ["zip=", ""])
def test_zip_round_trip(tmp_path, c, with_labels, prefix):
    images = random_images(1003, c, 4)
    labels = np.arange(1003) % 10 if with_labels else None
    out = save_zip(images, tmp_path / "gen.zip", labels=labels)
    assert os.listdir(tmp_path) == ["gen.zip"]
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        meta = json.loads(z.read("dataset.json"))
    assert names[0] == "00000/img00000000.png" and "00001/img00001002.png" in names
    if with_labels:
        assert meta["labels"][1002] == ["00001/img00001002.png", 2]
    else:
        assert meta == {"labels": None}
    d = load_images(f"{prefix}{out}")
    np.testing.assert_array_equal(d.images, images)
    if with_labels:
        np.testing.assert_array_equal(d.labels, labels)
        assert d.labels.dtype == np.int64
    else:
        assert d.labels is None
    assert d.name == "gen"


def test_ffhq_prefix_takes_a_zip(tmp_path):
    images = random_images(3, 3, 8)
    d = load_images(f"ffhq={save_zip(images, tmp_path / 'ffhq-8x8.zip')}")
    np.testing.assert_array_equal(d.images, images)
    assert d.name == "ffhq"


def test_zip_with_images_anywhere_sorted_by_name(tmp_path):
    images = random_images(3, 3, 4)
    path = tmp_path / "loose.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, i in (("b/x.png", 2), ("a.png", 0), ("a/z.png", 1)):
            z.writestr(name, dd.png_bytes(images[i]))
        z.writestr("README.txt", "not an image")
    np.testing.assert_array_equal(load_images(f"zip={path}").images, images)


def test_folder_is_recursive_sorted_by_path_and_skips_hidden(tmp_path):
    images = random_images(3, 3, 6)
    root = tmp_path / "imgs"
    for rel, i in (("b/1.png", 2), ("a/2.png", 1), ("a/10.png", 0)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(dd.png_bytes(images[i]))
    (root / ".trash").mkdir()
    (root / ".trash" / "old.png").write_bytes(b"junk")
    (root / "notes.txt").write_text("not an image")
    np.testing.assert_array_equal(load_images(f"folder={root}").images, images)
    assert len(load_images(f"folder={root}", limit=2)) == 2


def test_folder_mixed_gray_and_color_gives_rgb_and_jpeg_is_read(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    gray = random_images(1, 1, 8)[0, 0]
    Image.fromarray(gray).save(root / "a.png")
    Image.fromarray(random_images(1, 3, 8)[0].transpose(1, 2, 0)).save(root / "b.jpg")
    d = load_images(str(root))
    assert d.images.shape == (2, 3, 8, 8)
    for c in range(3):
        np.testing.assert_array_equal(d.images[0, c], gray)
    assert load_images(str(root), channels=1).images.shape == (2, 1, 8, 8)


def test_path_containing_equals_sign_is_a_path(tmp_path):
    out = save_png_folder(random_images(2, 3, 4), tmp_path / "run=3")
    assert len(load_images(str(out))) == 2


# ---------------------------------------------------------------------------------------------
# atomic saving


def test_save_refuses_non_empty_folder_and_leaves_it_untouched(tmp_path):
    target = tmp_path / "samples"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(ValueError, match="not an empty folder"):
        save_png_folder(random_images(2, 3, 4), target)
    assert os.listdir(target) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "precious"
    assert os.listdir(tmp_path) == ["samples"]


def test_save_into_existing_empty_folder(tmp_path):
    (tmp_path / "samples").mkdir()
    images = random_images(2, 1, 4)
    save_png_folder(images, tmp_path / "samples")
    np.testing.assert_array_equal(load_images(str(tmp_path / "samples")).images, images)
    assert os.listdir(tmp_path) == ["samples"]


def test_save_zip_refuses_existing_file(tmp_path):
    (tmp_path / "gen.zip").write_bytes(b"old")
    with pytest.raises(ValueError, match="already exists"):
        save_zip(random_images(2, 3, 4), tmp_path / "gen.zip")
    assert (tmp_path / "gen.zip").read_bytes() == b"old"


@pytest.mark.parametrize("save", [save_png_folder, save_zip])
def test_failed_save_leaves_nothing(tmp_path, monkeypatch, save):
    real = dd.png_bytes
    calls = []

    def failing(image):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(image)

    monkeypatch.setattr(data_save, "png_bytes", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        save(random_images(5, 3, 4), tmp_path / "out")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 3, 4, 4), np.float32),
        np.zeros((2, 4, 4), np.uint8),
        np.zeros((2, 2, 4, 4), np.uint8),
        np.zeros((0, 3, 4, 4), np.uint8),
        [[[[0]]]],
    ],
)
@pytest.mark.parametrize("save", [save_png_folder, save_zip])
def test_save_rejects_bad_arrays(tmp_path, images, save):
    with pytest.raises(ValueError):
        save(images, tmp_path / "out")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize("prefix", ["", "cifar10=", "ffhq=", "folder=", "zip="])
def test_missing_path(tmp_path, prefix):
    with pytest.raises(ValueError, match="no such file or folder"):
        load_images(f"{prefix}{tmp_path / 'nope'}")


@pytest.mark.parametrize("prefix", ["", "folder=", "ffhq="])
def test_empty_folder(tmp_path, prefix):
    with pytest.raises(ValueError, match="no PNG or JPEG images"):
        load_images(f"{prefix}{tmp_path}")


def test_images_of_different_sizes_name_the_first_mismatch(tmp_path):
    for name, side in (("a.png", 8), ("b.png", 8), ("c.png", 9), ("d.png", 10)):
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / name)
    with pytest.raises(ValueError, match=r"c\.png: image is 9x9 but .*a\.png is 8x8"):
        load_images(str(tmp_path))


def test_unreadable_image(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"cannot read image .*b\.png"):
        load_images(str(tmp_path))


@pytest.mark.parametrize("spec", ["imagenet=/data", "cifar=x", "digits=8", "zip="])
def test_unknown_prefix_or_empty_path(spec):
    with pytest.raises(ValueError):
        load_images(spec)


def test_resolution_mismatch(tmp_path):
    out = save_png_folder(random_images(2, 3, 8), tmp_path / "f")
    zipped = save_zip(random_images(2, 3, 8), tmp_path / "z.zip")
    for spec in (str(out), f"zip={zipped}"):
        with pytest.raises(ValueError, match="8x8, not 16x16"):
            load_images(spec, resolution=16)
        assert load_images(spec, resolution=8).resolution == 8


def test_bad_files_and_arguments(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a zip, a CIFAR-10 tarball"):
        load_images(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="not a readable zip"):
        load_images(f"zip={tmp_path / 'notes.txt'}")
    with pytest.raises(ValueError, match="not a folder"):
        load_images(f"folder={tmp_path / 'notes.txt'}")
    for kwargs in ({"channels": 2}, {"limit": 0}, {"resolution": -1}):
        with pytest.raises(ValueError):
            load_images(str(tmp_path), **kwargs)
    with pytest.raises(ValueError):
        load_images("")


def test_zip_with_bad_dataset_json(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.png", dd.png_bytes(random_images(1, 3, 4)[0]))
        z.writestr("dataset.json", json.dumps({"labels": [["other.png", 1]]}))
    with pytest.raises(ValueError, match="no label for a.png"):
        load_images(f"zip={path}")


# ---------------------------------------------------------------------------------------------
# ImageDataset


def test_image_dataset_subset_and_checks():
    images = random_images(6, 3, 4)
    d = ImageDataset(images, "x", labels=np.arange(6))
    s = d.subset([4, 1])
    np.testing.assert_array_equal(s.images, images[[4, 1]])
    np.testing.assert_array_equal(s.labels, [4, 1])
    assert s.name == "x" and len(d.subset(slice(0, 3))) == 3
    with pytest.raises(ValueError, match="not square"):
        _ = ImageDataset(np.zeros((1, 1, 4, 5), np.uint8), "r").resolution
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(images, "x", labels=np.arange(5))
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(images.astype(np.float32), "x")
