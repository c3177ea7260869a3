"""Image data for the retraining loop at image scale: loaders, PNG folders and EDM-style zips.

Images are numpy uint8 arrays of shape (N, C, H, W), C = 1 or 3, in the order the source lists
them. ``load_images(spec)`` reads, from local paths only (nothing is downloaded):

- ``digits`` / ``digits:R``: scikit-learn's bundled 8x8 digits (1797 images, values 0..16),
  scaled to 0..255 and resampled to R x R (default 32) with Pillow's bilinear filter on float32
  values (when upsampling, the same numbers as torch's ``interpolate(mode="bilinear",
  align_corners=False)``), rounded once to uint8.
- ``cifar10=PATH``: the CIFAR-10 training set (data_batch_1..5) from the official python or
  binary archive, as the ``.tar.gz`` or extracted; python batches go through a restricted
  unpickler that can only rebuild numpy arrays.
- ``ffhq=PATH`` / ``folder=PATH``: PNG/JPEG files under a folder (recursive, sorted by path);
  ``ffhq=`` also takes an EDM-style zip.
- ``zip=PATH``: an EDM-style dataset zip (PNGs, optional ``dataset.json`` with labels).
- a plain path: detected from what it holds (see ``load_images``).

``save_png_folder`` and ``save_zip`` write samples so that ``load_images`` reads back the same
pixels, and rename into place only once complete, so a crash never leaves a half-written dataset.

Reference: the CIFAR-10 formats are described at https://www.cs.toronto.edu/~kriz/cifar.html;
the zip layout follows the one EDM's ``dataset_tool.py`` writes (Karras et al., 2022).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import re
import shutil
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stability.errors import UsageError, check_n

__all__ = [
    "ImageDataset",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "load_images",
    "save_png_folder",
    "save_zip",
]

PREFIXES = ("digits", "cifar10", "ffhq", "folder", "zip")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DIGITS_DEFAULT_RESOLUTION = 32

_CIFAR_SIDE = 32
_CIFAR_PIXELS = 3 * _CIFAR_SIDE * _CIFAR_SIDE  # R, G and B planes of 32x32, row-major
_CIFAR_PY_MEMBER = re.compile(r"(?:^|/)data_batch_([1-5])$")
_CIFAR_BIN_MEMBER = re.compile(r"(?:^|/)data_batch_([1-5])\.bin$")
_CIFAR_TARBALLS = ("cifar-10-python.tar.gz", "cifar-10-binary.tar.gz")
_PREFIX_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(eq=False)
class ImageDataset:
    """A set of images with an optional label per image.

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, C, H, W), C = 1 or 3
    name : str
        What the images are (``digits``, ``cifar10``, ``ffhq``, a folder or zip name).
    labels : np.ndarray, shape (N,) or (N, K), optional
        Class index (or label vector) of each image.
    """

    images: np.ndarray
    name: str
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_images(self.images)
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.ndim not in (1, 2) or len(self.labels) != len(self.images):
                raise UsageError(
                    f"labels must have shape (N,) or (N, K) with N = {len(self.images)}, "
                    f"got {self.labels.shape}"
                )

    @property
    def resolution(self) -> int:
        """Side of the (square) images in pixels."""
        h, w = self.images.shape[2:]
        if h != w:
            raise UsageError(f"{self.name}: images are {h}x{w}, not square")
        return h

    @property
    def channels(self) -> int:
        """Number of channels C (1 or 3)."""
        return self.images.shape[1]

    def __len__(self) -> int:
        return len(self.images)

    def to_float(self) -> np.ndarray:
        """The images as float32 in [-1, 1], x / 127.5 - 1, shape (N, C, H, W)."""
        return self.images.astype(np.float32) / np.float32(127.5) - np.float32(1)

    def subset(self, indices) -> ImageDataset:
        """The images (and labels) at `indices` (int array of shape (M,), a slice or a mask)."""
        labels = None if self.labels is None else self.labels[indices]
        return ImageDataset(self.images[indices], self.name, labels)


# --------------------------------------------------------------------------------------------
# Loading


def load_images(
    spec: str,
    resolution: int | None = None,
    channels: int | None = None,
    limit: int | None = None,
) -> ImageDataset:
    """Load an image data set from a local spec (see the module docstring).

    A plain path without a prefix is read as a zip if it is a zip file, as CIFAR-10 if it is a
    tarball or a folder holding ``data_batch_1[.bin]``, ``cifar-10-batches-{py,bin}`` or a
    CIFAR-10 tarball, and as a folder of images otherwise.

    Parameters
    ----------
    spec : str
        ``digits[:R]``, ``cifar10=PATH``, ``ffhq=PATH``, ``folder=PATH``, ``zip=PATH`` or PATH.
    resolution : int, optional
        Expected side in pixels; the data must already have it (digits are resampled to it).
    channels : int, optional
        1 or 3; by default digits and all-grayscale folders/zips give 1, everything else 3.
        Color is converted to gray with ITU-R 601-2 luma (Pillow's ``convert("L")``).
    limit : int, optional
        Keep only the first `limit` images.

    Returns
    -------
    ImageDataset
        images uint8 of shape (N, C, H, W); labels for digits, CIFAR-10 and labelled zips.

    Raises
    ------
    ValueError
        With a one-line message, for any bad spec, path or file.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"data spec must be a non-empty string, got {spec!r}")
    if resolution is not None:
        check_n(resolution, "resolution", minimum=1)
        resolution = int(resolution)
    if channels is not None and channels not in (1, 3):
        raise UsageError(f"channels must be 1 or 3, got {channels!r}")
    if limit is not None:
        check_n(limit, "limit", minimum=1)
        limit = int(limit)

    kind, path = _parse_spec(spec)
    if kind == "digits":
        return _load_digits(spec, resolution, channels, limit)
    if kind is None:
        kind = _detect_kind(path)
    if kind == "cifar10":
        data = _load_cifar10(path, channels, limit)
    elif kind == "zip" or (kind == "ffhq" and path.is_file()):
        # EDM distributes FFHQ-64 as a dataset zip: ffhq= takes it as well as a folder.
        data = _load_zip(path, channels, limit, resolution)
        if kind == "ffhq":
            data.name = "ffhq"
    else:
        name = "ffhq" if kind == "ffhq" else path.name
        data = _load_folder(path, name, channels, limit, resolution)
    if resolution is not None and data.images.shape[2:] != (resolution, resolution):
        h, w = data.images.shape[2:]
        raise UsageError(
            f"{spec}: images are {h}x{w}, not {resolution}x{resolution} (resample them first)"
        )
    return data


def _parse_spec(spec: str) -> tuple[str | None, Path | None]:
    """(kind, path) of a spec; kind None means a plain path to detect."""
    if spec == "digits" or spec.startswith("digits:"):
        return "digits", None
    head, sep, rest = spec.partition("=")
    if sep and _PREFIX_WORD.fullmatch(head):
        if head in PREFIXES and head != "digits":
            if not rest:
                raise UsageError(f"{spec}: missing path after '{head}='")
            return head, _existing(rest)
        # A relative path may legitimately contain '=' ("run=3"): only an unknown word that
        # names no existing path is a wrong prefix.
        if not os.path.exists(spec):
            raise UsageError(
                f"unknown data prefix {head!r} in {spec!r} (expected one of: digits[:R], "
                + ", ".join(f"{p}=PATH" for p in PREFIXES[1:])
                + ", or a path)"
            )
    return None, _existing(spec)


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"no such file or folder: {path}")
    return p


def _detect_kind(path: Path) -> str:
    if path.is_file():
        if zipfile.is_zipfile(path):
            return "zip"
        if tarfile.is_tarfile(path):
            return "cifar10"
        raise UsageError(f"{path}: not a zip, a CIFAR-10 tarball or a folder of images")
    if _find_cifar(path) is not None:
        return "cifar10"
    return "folder"


def _convert_channels(images: np.ndarray, channels: int | None) -> np.ndarray:
    """Images (N, C, H, W) uint8 with `channels` channels (None keeps C)."""
    c = images.shape[1]
    if channels is None or channels == c:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=1)
    # Pillow's fixed-point ITU-R 601-2 luma, so arrays and decoded files agree bit for bit.
    rgb = images.astype(np.uint32)
    luma = rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000
    return (luma >> 16).astype(np.uint8)[:, None]


# digits ------------------------------------------------------------------------------------


def _load_digits(spec, resolution, channels, limit) -> ImageDataset:
    side = resolution
    if spec != "digits":
        text = spec.partition(":")[2]
        try:
            side = int(text)
        except ValueError:
            raise UsageError(f"{spec}: resolution after 'digits:' must be an integer") from None
        if side < 1:
            raise UsageError(f"{spec}: resolution must be >= 1")
        if resolution is not None and resolution != side:
            raise UsageError(f"{spec} conflicts with resolution={resolution}")
    side = side or DIGITS_DEFAULT_RESOLUTION
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the 'digits' data set needs scikit-learn: pip install scikit-learn"
        ) from err
    from PIL import Image

    bunch = load_digits()
    small = bunch.images[:limit].astype(np.float32) * np.float32(255 / 16)
    if side == small.shape[1]:
        big = small
    else:
        # Resample the float32 values (Pillow mode "F"), not 8-bit ones, so pixels are rounded once.
        big = np.stack(
            [
                np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR))
                for img in small
            ]
        )
    images = np.clip(np.rint(big), 0, 255).astype(np.uint8)[:, None]
    labels = bunch.target[:limit].astype(np.int64)
    return ImageDataset(_convert_channels(images, channels), "digits", labels)


# CIFAR-10 ----------------------------------------------------------------------------------


def _numpy_attr(modules: tuple[str, ...], name: str):
    # numpy 2 moved numpy.core to numpy._core; importing the old name there warns.
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {' or '.join(modules)}")


def _allowed_globals() -> dict[tuple[str, str], object]:
    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    # The official batches were pickled under numpy.core (numpy 1); files re-pickled by
    # numpy 2 say numpy._core; pickle protocol 5 rebuilds arrays with _frombuffer instead.
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "ndarray")] = np.ndarray
        allowed[(f"{core}.multiarray", "dtype")] = np.dtype
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class UnsafePickleError(ValueError):
    """A pickle asked for a global that the restricted unpickler does not admit."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else.

    A pickle can call any importable function while it loads; CIFAR-10 batches need only
    numpy's array reconstruction, so every other global is refused before it is looked up.
    Use ``encoding="bytes"`` for the Python 2 pickles of the official archive.
    """

    def __init__(self, file, *, source: str = "pickle", **kwargs) -> None:
        super().__init__(file, **kwargs)
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle {module}.{name} from {self.source}: "
                "only numpy arrays are allowed"
            ) from None


def _find_cifar(folder: Path) -> tuple[str, Path, str | None] | None:
    """Where CIFAR-10 is in `folder`: ("dir", batches folder, format) or ("tar", tarball, None)."""
    for candidate in (folder, folder / "cifar-10-batches-py", folder / "cifar-10-batches-bin"):
        if (candidate / "data_batch_1").is_file():
            return "dir", candidate, "py"
        if (candidate / "data_batch_1.bin").is_file():
            return "dir", candidate, "bin"
    for name in _CIFAR_TARBALLS:
        if (folder / name).is_file():
            return "tar", folder / name, None
    return None


def _cifar_batches(path: Path) -> tuple[str, dict[int, bytes], str]:
    """(format, {batch number: raw file bytes}, where) of the CIFAR-10 training batches."""
    if path.is_dir():
        found = _find_cifar(path)
        if found is None:
            raise UsageError(
                f"{path}: no CIFAR-10 training batches (data_batch_1..5 or data_batch_1..5.bin, "
                "cifar-10-batches-py/bin, or cifar-10-python/binary.tar.gz)"
            )
        kind, where, fmt = found
        if kind == "dir":
            suffix = ".bin" if fmt == "bin" else ""
            raw = {}
            for i in range(1, 6):
                file = where / f"data_batch_{i}{suffix}"
                if file.is_file():
                    raw[i] = file.read_bytes()
            return fmt, raw, str(where)
        path = where
    found_py: dict[int, bytes] = {}
    found_bin: dict[int, bytes] = {}
    try:
        # One streaming pass: seeking back and forth in a .tar.gz would decompress it again.
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                for pattern, found in (
                    (_CIFAR_PY_MEMBER, found_py),
                    (_CIFAR_BIN_MEMBER, found_bin),
                ):
                    match = pattern.search(member.name)
                    if match:
                        found[int(match.group(1))] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise UsageError(f"{path}: cannot read the tarball ({err})") from None
    if found_py:
        return "py", found_py, str(path)
    if found_bin:
        return "bin", found_bin, str(path)
    raise UsageError(f"{path}: the tarball holds no CIFAR-10 data_batch_1..5")


def _parse_cifar_py(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = RestrictedUnpickler(io.BytesIO(raw), source=source, encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as err:
        # A corrupt pickle can fail in many ways (EOFError, UnpicklingError, TypeError...).
        raise UsageError(f"{source}: not a CIFAR-10 python batch ({err})") from None
    if not isinstance(batch, dict):
        raise UsageError(f"{source}: not a CIFAR-10 python batch (not a dict)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise UsageError(f"{source}: 'data' is not a uint8 array of shape (n, {_CIFAR_PIXELS})")
    if data.shape[1] != _CIFAR_PIXELS:
        raise UsageError(f"{source}: 'data' has shape {data.shape}, not (n, {_CIFAR_PIXELS})")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: 'labels' is not a list of integers") from None
    if labels.shape != (len(data),):
        raise UsageError(f"{source}: {len(data)} images but labels of shape {labels.shape}")
    return data.reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE), labels


def _parse_cifar_bin(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    record = 1 + _CIFAR_PIXELS
    if not raw or len(raw) % record:
        raise UsageError(
            f"{source}: {len(raw)} bytes is not a whole number of {record}-byte records"
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    images = rows[:, 1:].reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE)
    return images, rows[:, 0].astype(np.int64)


def _load_cifar10(path: Path, channels, limit) -> ImageDataset:
    fmt, raw, where = _cifar_batches(path)
    numbers = sorted(raw)
    # All five batches: a partially extracted copy would otherwise load as a smaller data set
    # without anyone noticing.
    if numbers != [1, 2, 3, 4, 5]:
        missing = min(set(range(1, 6)) - set(numbers))
        raise UsageError(f"{where}: data_batch_{missing} is missing (CIFAR-10 has data_batch_1..5)")
    parse = _parse_cifar_py if fmt == "py" else _parse_cifar_bin
    images, labels = [], []
    for i in numbers:
        x, y = parse(raw.pop(i), f"{where}: data_batch_{i}")
        images.append(x)
        labels.append(y)
        if limit is not None and sum(map(len, images)) >= limit:
            break
    images = np.concatenate(images)[:limit]
    labels = np.concatenate(labels)[:limit]
    return ImageDataset(_convert_channels(images, channels), "cifar10", labels)


# folders and zips of image files -----------------------------------------------------------


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _decode(
    sources: list[tuple[str, Callable[[], object]]], channels: int | None, resolution: int | None
) -> np.ndarray:
    """Decode (name, opener) pairs into uint8 (N, C, H, W); all must have the first's size."""
    from PIL import Image

    images = None
    all_gray = True
    for i, (name, opener) in enumerate(sources):
        try:
            with Image.open(opener()) as im:
                im.load()
                bands = im.getbands()
                gray = len(bands) <= 2 and bands[0] in ("1", "L", "I", "F")
                mode = {1: "L", 3: "RGB"}.get(channels, "L" if gray else "RGB")
                pixels = np.asarray(im.convert(mode))
        except Exception as err:
            # Pillow signals a broken file with many exception types (OSError, SyntaxError...).
            raise UsageError(f"cannot read image {name}: {err}") from None
        size = pixels.shape[:2]
        if images is None:
            if resolution is not None and size != (resolution, resolution):
                raise UsageError(
                    f"{name}: image is {size[0]}x{size[1]}, not {resolution}x{resolution} "
                    "(resample the data first)"
                )
            # Color until proven all-gray, so the array is allocated once whatever comes.
            images = np.empty((len(sources), channels or 3, *size), dtype=np.uint8)
        elif size != images.shape[2:]:
            h, w = images.shape[2:]
            raise UsageError(
                f"{name}: image is {size[0]}x{size[1]} but {sources[0][0]} is {h}x{w}; "
                "all images must have the same size"
            )
        all_gray = all_gray and pixels.ndim == 2
        images[i] = pixels if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if channels is None and all_gray:
        images = np.ascontiguousarray(images[:, :1])
    return images


def _load_folder(folder: Path, name: str, channels, limit, resolution) -> ImageDataset:
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    files = sorted(
        (p.relative_to(folder).as_posix(), p)
        for p in folder.rglob("*")
        # Hidden entries are editor, OS or unfinished-write leftovers, not data.
        if _is_image_name(p.name)
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )[:limit]
    if not files:
        raise UsageError(f"{folder}: no PNG or JPEG images found")
    sources = [(str(path), lambda path=path: path) for _, path in files]
    return ImageDataset(_decode(sources, channels, resolution), name)


def _load_zip(path: Path, channels, limit, resolution) -> ImageDataset:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UsageError(f"{path}: not a readable zip ({err})") from None
    with archive:
        names = sorted(
            n
            for n in archive.namelist()
            if _is_image_name(n) and not n.endswith("/") and not n.startswith("__MACOSX/")
        )[:limit]
        if not names:
            raise UsageError(f"{path}: no PNG or JPEG images in the zip")
        labels = _zip_labels(archive, names, path)
        sources = [(f"{path}:{n}", lambda n=n: io.BytesIO(archive.read(n))) for n in names]
        images = _decode(sources, channels, resolution)
    return ImageDataset(images, path.stem, labels)


def _zip_labels(archive: zipfile.ZipFile, names: list[str], path: Path) -> np.ndarray | None:
    """Labels of `names` from dataset.json ({"labels": [[name, label], ...] or null})."""
    if "dataset.json" not in archive.namelist():
        return None
    try:
        meta = json.loads(archive.read("dataset.json"))
        pairs = meta.get("labels") if isinstance(meta, dict) else None
        if pairs is None:
            return None
        table = {str(fname): label for fname, label in pairs}
    except (ValueError, TypeError, zipfile.BadZipFile) as err:
        raise UsageError(f"{path}: bad dataset.json ({err})") from None
    missing = [n for n in names if n not in table]
    if missing:
        raise UsageError(f"{path}: dataset.json has no label for {missing[0]}")
    try:
        labels = np.asarray([table[n] for n in names])
    except ValueError as err:
        raise UsageError(f"{path}: dataset.json labels are ragged ({err})") from None
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        return labels
    raise UsageError(f"{path}: dataset.json labels must be numbers, got {labels.dtype}")


# --------------------------------------------------------------------------------------------
# Saving


def _check_images(images) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise UsageError(
            "images must be a uint8 numpy array of shape (N, C, H, W), got "
            + (
                f"{images.dtype} {images.shape}"
                if isinstance(images, np.ndarray)
                else repr(type(images))
            )
        )
    if images.shape[1] not in (1, 3):
        raise UsageError(f"images must have 1 or 3 channels, got shape {images.shape}")


def _png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of one uint8 image of shape (C, H, W)."""
    from PIL import Image

    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return buf.getvalue()


def _temporary_sibling(path: Path) -> Path:
    # Same folder as the target, so the final rename stays on one filesystem (atomic); a
    # hidden name so that loaders scanning the parent skip it.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def save_png_folder(images: np.ndarray, path) -> Path:
    """Write one PNG per image, ``path/000000.png``, ..., renamed into place when complete.

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, C, H, W), C = 1 or 3
    path : str or Path
        Target folder; it must not exist or be empty.

    Returns
    -------
    Path
        `path`.
    """
    _check_images(images)
    if len(images) == 0:
        raise UsageError("no images to save")
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{path} already exists and is not an empty folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(images) - 1)))
    tmp = _temporary_sibling(path)
    tmp.mkdir()
    try:
        for i, image in enumerate(images):
            (tmp / f"{i:0{width}d}.png").write_bytes(_png_bytes(image))
        try:
            os.replace(tmp, path)
        except OSError:
            # Windows cannot rename onto an existing (empty) folder; POSIX replaces it atomically.
            path.rmdir()
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def save_zip(images: np.ndarray, path, labels=None) -> Path:
    """Write an EDM-style dataset zip (``00000/img00000000.png``, dataset.json), atomically.

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, C, H, W), C = 1 or 3
    path : str or Path
        Target zip file; it must not exist.
    labels : np.ndarray, int of shape (N,) or float of shape (N, K), optional
        Stored in dataset.json as ``{"labels": [[name, label], ...]}``; ``null`` when None.

    Returns
    -------
    Path
        `path`.
    """
    _check_images(images)
    if len(images) == 0:
        raise UsageError("no images to save")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim not in (1, 2) or len(labels) != len(images):
            raise UsageError(
                f"labels must have shape (N,) or (N, K) with N = {len(images)}, got {labels.shape}"
            )
    path = Path(path)
    if path.exists():
        raise UsageError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"{i // 1000:05d}/img{i:08d}.png" for i in range(len(images))]
    meta = {"labels": None if labels is None else [list(p) for p in zip(names, labels.tolist())]}
    tmp = _temporary_sibling(path)
    try:
        with open(tmp, "xb") as f:
            # PNG is already compressed: storing avoids a second, useless deflate pass.
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
                for name, image in zip(names, images):
                    archive.writestr(name, _png_bytes(image))
                archive.writestr("dataset.json", json.dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
