"""PNG/JPEG images from a folder or an EDM-style dataset zip, with bounded memory.

Every image's size is read from its header before its pixels are decoded (Pillow's
``Image.open(...).size`` reads no pixel data) and must be the data set's resolution: the one
asked for, or else the first image's, at most `MAX_SIDE` pixels a side. Zip members are read as
capped streams: an image file by what an image of that side can take, ``dataset.json`` by what
a label per image can take. The zip layout follows EDM's ``dataset_tool.py`` (Karras et al.,
2022): PNGs and an optional ``dataset.json`` of ``{"labels": [[name, label], ...] or null}``.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deep.data.archives import read_zip_member
from deep.data.dataset import ImageDataset
from stability.errors import UsageError

__all__ = ["IMAGE_SUFFIXES", "MAX_SIDE", "image_file_cap", "load_folder", "load_zip"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The largest side accepted when no resolution is asked for: FFHQ's native 1024 (the paper's
# runs use 32 and 64); a header claiming more is refused before its pixels are decoded.
MAX_SIDE = 1024
# dataset.json: one [name, label] pair per image; 4 KiB each leaves room for label vectors of
# a few hundred numbers, 1 MiB for the rest of the file.
LABEL_BYTES_PER_IMAGE = 4096
LABEL_BYTES_BASE = 2**20


def image_file_cap(side: int) -> int:
    """Bytes an image file of side x side pixels may take in a zip: 16-bit RGBA stored without
    compression (8 bytes a pixel) plus 4 MiB of headers and metadata (ICC profile, EXIF)."""
    return 8 * side * side + 4 * 2**20


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _expected_size(name: str, size: tuple[int, int], resolution: int | None) -> tuple[int, int]:
    """The (height, width) every image must have, from the first image's header `size`."""
    if resolution is not None:
        if size != (resolution, resolution):
            raise UsageError(
                f"{name}: image is {size[0]}x{size[1]}, not {resolution}x{resolution} "
                "(resample the data first)"
            )
        return size
    if max(size) > MAX_SIDE:
        raise UsageError(
            f"{name}: image is {size[0]}x{size[1]}, larger than {MAX_SIDE} pixels a side "
            "(resample the data first)"
        )
    return size


def _decode(
    sources: list[tuple[str, Callable[[], object]]], channels: int | None, resolution: int | None
) -> np.ndarray:
    """Decode (name, opener) pairs into uint8 (N, C, H, W); all must have the first's size.

    Each size is checked from the image's header before its pixels are decoded, so an image
    claiming 9000 x 9000 pixels costs its header, not 243 MB.
    """
    from PIL import Image

    images = None
    expected = None
    all_gray = True
    for i, (name, opener) in enumerate(sources):
        try:
            with Image.open(opener()) as im:
                size = (im.height, im.width)  # from the header: nothing decoded yet
                if expected is None:
                    expected = _expected_size(name, size, resolution)
                elif size != expected:
                    raise UsageError(
                        f"{name}: image is {size[0]}x{size[1]} but {sources[0][0]} is "
                        f"{expected[0]}x{expected[1]}; all images must have the same size"
                    )
                im.load()
                bands = im.getbands()
                gray = len(bands) <= 2 and bands[0] in ("1", "L", "I", "F")
                mode = {1: "L", 3: "RGB"}.get(channels, "L" if gray else "RGB")
                pixels = np.asarray(im.convert(mode))
        except UsageError:
            raise
        except Exception as err:
            # Pillow signals a broken file with many exception types (OSError, SyntaxError...).
            raise UsageError(f"cannot read image {name}: {err}") from None
        if pixels.shape[:2] != expected:
            raise UsageError(f"{name}: decoded to {pixels.shape[:2]}, its header said {expected}")
        if images is None:
            # Color until proven all-gray, so the array is allocated once whatever comes.
            images = np.empty((len(sources), channels or 3, *expected), dtype=np.uint8)
        all_gray = all_gray and pixels.ndim == 2
        images[i] = pixels if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if channels is None and all_gray:
        images = np.ascontiguousarray(images[:, :1])
    return images


def load_folder(folder: Path, name: str, channels, limit, resolution) -> ImageDataset:
    """The PNG/JPEG images under `folder` (recursively, in path order; hidden entries skipped).

    Parameters
    ----------
    folder : Path
    name : str
        The data set's name.
    channels : int or None
        1 or 3; None gives 1 when every image is gray, else 3.
    limit : int or None
        Keep the first `limit` images (in path order).
    resolution : int or None
        The side every image must have; None: the first image's, at most `MAX_SIDE`.

    Returns
    -------
    ImageDataset
        uint8 images of shape (N, C, H, W), no labels.

    Raises
    ------
    UsageError
        Not a folder, no images, an unreadable image or one of another size.
    """
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


def load_zip(path: Path, channels, limit, resolution) -> ImageDataset:
    """The PNG/JPEG images of an EDM-style dataset zip, with dataset.json's labels if any.

    Members are read in name order as capped streams (`image_file_cap`), so a member that
    inflates beyond what an image of the data's side can take is refused, not read.

    Parameters
    ----------
    path : Path
        The zip; the data set is named after its stem.
    channels, limit, resolution
        As in `load_folder`.

    Returns
    -------
    ImageDataset
        uint8 images of shape (N, C, H, W); labels of shape (N,) (int64) or (N, K) from
        ``dataset.json`` when it gives them.

    Raises
    ------
    UsageError
        Not a readable zip, no images, an image too large, unreadable or of another size, or
        a bad ``dataset.json`` (unreadable, too large, a missing or non-numeric label).
    """
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
        cap = image_file_cap(resolution or MAX_SIDE)
        why = f"an image of {resolution or MAX_SIDE} pixels a side takes less"

        def opener(n):
            return io.BytesIO(read_zip_member(archive, archive.getinfo(n), cap, f"{path}:{n}", why))

        sources = [(f"{path}:{n}", lambda n=n: opener(n)) for n in names]
        images = _decode(sources, channels, resolution)
    return ImageDataset(images, path.stem, labels)


def _zip_labels(archive: zipfile.ZipFile, names: list[str], path: Path) -> np.ndarray | None:
    """Labels of `names` from dataset.json ({"labels": [[name, label], ...] or null})."""
    if "dataset.json" not in archive.namelist():
        return None
    count = sum(map(_is_image_name, archive.namelist()))
    cap = LABEL_BYTES_BASE + LABEL_BYTES_PER_IMAGE * count
    why = f"{LABEL_BYTES_PER_IMAGE} bytes of labels for each of its {count} images"
    try:
        raw = read_zip_member(
            archive, archive.getinfo("dataset.json"), cap, f"{path}:dataset.json", why
        )
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
        raise UsageError(f"{path}: cannot read dataset.json ({err})") from None
    try:
        meta = json.loads(raw)
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
