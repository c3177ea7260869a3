"""CIFAR-10 training batches from the official python or binary archive, read with caps.

The batches (data_batch_1..5) come from the ``.tar.gz`` or from an extracted folder; python
batches go through a restricted unpickler that can only rebuild numpy arrays. Every batch is
read as a capped stream: a real one is at most `CIFAR_BATCH_MAX` bytes, so a member that claims
more is refused before it is read. Formats: https://www.cs.toronto.edu/~kriz/cifar.html
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from deep.data.archives import read_file, read_tar_member
from deep.data.dataset import ImageDataset, convert_channels
from stability.errors import UsageError

__all__ = [
    "CIFAR_BATCH_MAX",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "find_cifar",
    "load_cifar10",
]

_CIFAR_SIDE = 32
_CIFAR_PIXELS = 3 * _CIFAR_SIDE * _CIFAR_SIDE  # R, G and B planes of 32x32, row-major
_CIFAR_BATCH_IMAGES = 10000
# A binary batch is 10000 records of 1 label byte + 3072 pixel bytes (30,730,000 bytes); a
# python batch holds the same bytes plus a pickled label list, file names and a batch label
# (the official data_batch_1 is 31,035,704 bytes): 1 MiB of slack covers both.
CIFAR_BATCH_MAX = _CIFAR_BATCH_IMAGES * (1 + _CIFAR_PIXELS) + 2**20
_WHY = "a CIFAR-10 batch of 10000 32x32 images is at most that"
_CIFAR_PY_MEMBER = re.compile(r"(?:^|/)data_batch_([1-5])$")
_CIFAR_BIN_MEMBER = re.compile(r"(?:^|/)data_batch_([1-5])\.bin$")
_CIFAR_TARBALLS = ("cifar-10-python.tar.gz", "cifar-10-binary.tar.gz")


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


def find_cifar(folder: Path) -> tuple[str, Path, str | None] | None:
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
        found = find_cifar(path)
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
                    raw[i] = read_file(file, CIFAR_BATCH_MAX, _WHY)
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
                        what = f"{path}:{member.name}"
                        batch = read_tar_member(tar, member, CIFAR_BATCH_MAX, what, _WHY)
                        found[int(match.group(1))] = batch
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


def load_cifar10(path: Path, channels, limit) -> ImageDataset:
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
    return ImageDataset(convert_channels(images, channels), "cifar10", labels)
