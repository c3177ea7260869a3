"""CIFAR-10 training batches from the official python or binary archive, read with caps.

The batches (data_batch_1..5) come from the ``.tar.gz`` or from an extracted folder; python
batches go through a restricted unpickler that can only rebuild numpy arrays. Every batch is
read as a capped stream: a real one is at most `CIFAR_BATCH_MAX` bytes, so a member that claims
more is refused before it is read. Formats: https://www.cs.toronto.edu/~kriz/cifar.html

A pickle within that cap can still ask for far more memory than its size: a 9-byte pickle
whose memo index is 2^26 makes the C unpickler grow its memo table to 1 GiB, 3 MB of
one-byte "new list" opcodes build 3 million lists (233 MiB), and a 70-byte call of numpy's
array reconstruction with a shape of (200000, 3072) allocates 586 MiB (measured, peak RSS).
So a python batch is first read opcode by opcode without building anything
(`check_pickle_size`: at most `PICKLE_OPS_MAX` opcodes and memo entries), and the unpickler
builds arrays only through checked constructors: no object arrays, no direct ndarray(...)
call, and at most `CIFAR_BATCH_MAX` bytes of arrays allocated by shape. What is left is
proportional to the batch's size.
"""

from __future__ import annotations

import importlib
import io
import math
import pickle
import pickletools
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
    "PICKLE_OPS_MAX",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "check_pickle_size",
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
# A python batch pickles about three opcodes per image (its label, its file name and the name's
# memo entry) around one string of pixels: 30,000-odd opcodes. Ten per image is ample, and
# bounds the objects (and memo entries) a pickle can build to a few MiB whatever its opcodes.
PICKLE_OPS_MAX = 10 * _CIFAR_BATCH_IMAGES
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
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


class UnsafePickleError(UsageError):
    """A pickle asked for a global, or an array, that the restricted unpickler does not admit
    (bad input: exit 2)."""


class _NdarrayType:
    """What the pickle's ``numpy.ndarray`` global stands for: the class argument of numpy's
    array reconstruction, never a constructor called with a shape of the pickle's choosing."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError(f"refusing numpy.ndarray(...) called by {self.source}")


def check_pickle_size(raw: bytes, source: str) -> None:
    """Read a pickle's opcodes without building anything; refuse one that would build more
    objects or memo entries than a CIFAR-10 batch.

    The C unpickler sizes its memo table by the largest index it is asked to store (a memo
    index of 2^26 is a 1 GiB table), and each one-byte opcode such as EMPTY_LIST builds a new
    object of 56 bytes or more, so memory is bounded only if both counts are.

    Parameters
    ----------
    raw : bytes
        The pickle (at most `CIFAR_BATCH_MAX` bytes, already read).
    source : str
        Its name, for messages.

    Raises
    ------
    UsageError
        More than `PICKLE_OPS_MAX` opcodes, a memo index beyond it, or a malformed pickle.
    """
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(raw)), 1):
            if count > PICKLE_OPS_MAX:
                raise UsageError(
                    f"{source}: more than {PICKLE_OPS_MAX} pickle opcodes; a CIFAR-10 batch "
                    "has about 3 per image"
                )
            if op.name in _MEMO_PUTS and not 0 <= int(arg) < PICKLE_OPS_MAX:
                raise UsageError(
                    f"{source}: pickle memo index {arg} (a CIFAR-10 batch needs fewer than "
                    f"{PICKLE_OPS_MAX})"
                )
    except UsageError:
        raise
    except Exception as err:  # truncated or unknown opcodes, arguments past the end
        raise UsageError(f"{source}: not a CIFAR-10 python batch ({err})") from None


def _element_count(shape) -> int:
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise UnsafePickleError(f"refusing an array of shape {shape!r}")
    return math.prod(shape)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays of bounded size and plain containers, and
    nothing else.

    A pickle can call any importable function while it loads; CIFAR-10 batches need only
    numpy's array reconstruction, so every other global is refused before it is looked up, and
    the array constructors it may call are checked ones (see `find_class`). Use
    ``encoding="bytes"`` for the Python 2 pickles of the official archive. Bound the opcodes
    with `check_pickle_size` first: the unpickler itself cannot.

    Parameters
    ----------
    file : binary file
        The pickle.
    source : str
        Its name, for messages.
    array_bytes : int
        The most bytes that arrays built from a shape (numpy's ``_reconstruct``) may take in
        all; arrays filled from the pickle's own bytes (``__setstate__``, ``_frombuffer``)
        are bounded by the pickle's size.
    **kwargs
        Passed to `pickle.Unpickler` (``encoding``).
    """

    def __init__(
        self, file, *, source: str = "pickle", array_bytes: int = CIFAR_BATCH_MAX, **kwargs
    ) -> None:
        super().__init__(file, **kwargs)
        self.source = source
        self.array_bytes = array_bytes
        self._allowed = self._allowed_globals()

    def _allowed_globals(self) -> dict[tuple[str, str], object]:
        self._reconstruct_raw = _numpy_attr(
            ("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct"
        )
        frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
        self._ndarray = _NdarrayType(self.source)
        allowed: dict[tuple[str, str], object] = {
            ("numpy", "ndarray"): self._ndarray,
            ("numpy", "dtype"): self._dtype,
        }
        # The official batches were pickled under numpy.core (numpy 1); files re-pickled by
        # numpy 2 say numpy._core; pickle protocol 5 rebuilds arrays with _frombuffer instead.
        for core in ("numpy.core", "numpy._core"):
            allowed[(f"{core}.multiarray", "_reconstruct")] = self._reconstruct
            allowed[(f"{core}.multiarray", "ndarray")] = self._ndarray
            allowed[(f"{core}.multiarray", "dtype")] = self._dtype
            allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
        return allowed

    def _dtype(self, *args, **kwargs) -> np.dtype:
        """numpy.dtype, without object fields (an object array's items would be unpickled
        objects: references that cost 8 bytes each for 2 bytes of pickle)."""
        dtype = np.dtype(*args, **kwargs)
        if dtype.hasobject:
            raise UnsafePickleError(f"refusing an object dtype from {self.source}")
        return dtype

    def _reconstruct(self, subtype, shape, dtype):
        """numpy's array reconstruction, charged against `array_bytes` by its shape (the
        official pickles ask for shape (0,) and fill it from their bytes)."""
        if subtype is not self._ndarray:
            raise UnsafePickleError(f"refusing to reconstruct a {subtype!r} from {self.source}")
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise UnsafePickleError(f"refusing the dtype {dtype!r} from {self.source}") from None
        if dt.hasobject:
            raise UnsafePickleError(f"refusing an object array from {self.source}")
        size = _element_count(shape) * dt.itemsize
        if size > self.array_bytes:
            raise UnsafePickleError(
                f"refusing an array of {size} bytes from {self.source}: more than the "
                f"{self.array_bytes} left for this batch"
            )
        self.array_bytes -= size
        return self._reconstruct_raw(np.ndarray, shape, dtype)

    def find_class(self, module: str, name: str):
        """The object a pickle's global names, if it is one of numpy's array constructors.

        Parameters
        ----------
        module, name : str
            The global the pickle asks for (``numpy.core.multiarray``, ``_reconstruct``).

        Returns
        -------
        object
            A checked stand-in: ``_reconstruct`` bounded by `array_bytes`, ``dtype`` without
            object dtypes, ``ndarray`` only as reconstruction's class argument; or numpy's
            ``_frombuffer`` (its array is the pickle's own bytes).

        Raises
        ------
        UnsafePickleError
            Any other global, refused before it is imported.
        """
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
    check_pickle_size(raw, source)
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
    """The CIFAR-10 training set (data_batch_1..5) from an archive or a folder, with caps.

    Parameters
    ----------
    path : Path
        A ``cifar-10-python.tar.gz`` or ``cifar-10-binary.tar.gz``, a folder of extracted
        batches (``cifar-10-batches-py`` / ``-bin``), or a folder holding either.
    channels : int or None
        1 (Pillow's luma), 3, or None to keep the 3 colour planes (`convert_channels`).
    limit : int or None
        Keep the first `limit` images (batches past it are not parsed); None: all 50000.

    Returns
    -------
    ImageDataset
        Images uint8 of shape (N, C, 32, 32) (C = `channels`, or 3), labels int64 of shape (N,).

    Raises
    ------
    UsageError
        One line naming the file: a batch missing, larger than `CIFAR_BATCH_MAX`, malformed, or
        a python batch that is unsafe or would build more than a batch holds (`check_pickle_size`,
        `RestrictedUnpickler`).
    """
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
