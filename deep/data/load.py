"""``load_images(spec)``: an image data set from a local spec (see ``deep.data``)."""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from deep.data.cifar import find_cifar, load_cifar10
from deep.data.dataset import ImageDataset, convert_channels
from deep.data.images import load_folder, load_zip
from stability.errors import UsageError, check_n

__all__ = ["DIGITS_DEFAULT_RESOLUTION", "PREFIXES", "load_images"]

PREFIXES = ("digits", "cifar10", "ffhq", "folder", "zip")
DIGITS_DEFAULT_RESOLUTION = 32
_PREFIX_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def load_images(
    spec: str,
    resolution: int | None = None,
    channels: int | None = None,
    limit: int | None = None,
) -> ImageDataset:
    """Load an image data set from a local spec (the specs are described in ``deep.data``).

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
    UsageError
        With a one-line message, for any bad spec, option, path or file.
    """
    resolution, limit = _check_options(spec, resolution, channels, limit)
    kind, path = _parse_spec(spec)
    if kind == "digits":
        return _load_digits(spec, resolution, channels, limit)
    if kind is None:
        kind = _detect_kind(path)
    data = _load_path(kind, path, channels, limit, resolution)
    if resolution is not None and data.images.shape[2:] != (resolution, resolution):
        h, w = data.images.shape[2:]
        raise UsageError(
            f"{spec}: images are {h}x{w}, not {resolution}x{resolution} (resample them first)"
        )
    return data


def _check_options(spec, resolution, channels, limit) -> tuple[int | None, int | None]:
    """Validate the spec's type and the options; returns (resolution, limit) as ints or None."""
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
    return resolution, limit


def _load_path(kind: str, path: Path, channels, limit, resolution) -> ImageDataset:
    """Read a CIFAR-10 archive or folder, a dataset zip or a folder of images (`kind`)."""
    if kind == "cifar10":
        return load_cifar10(path, channels, limit)
    if kind == "zip" or (kind == "ffhq" and path.is_file()):
        # EDM distributes FFHQ-64 as a dataset zip: ffhq= takes it as well as a folder.
        data = load_zip(path, channels, limit, resolution)
        if kind == "ffhq":
            data.name = "ffhq"
        return data
    name = "ffhq" if kind == "ffhq" else path.name
    return load_folder(path, name, channels, limit, resolution)


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
    if find_cifar(path) is not None:
        return "cifar10"
    return "folder"


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
    return ImageDataset(convert_channels(images, channels), "digits", labels)
