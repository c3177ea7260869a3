"""Writing images as a folder of PNGs or an EDM-style dataset zip, atomically.

``save_png_folder`` and ``save_zip`` write samples so that ``deep.data.load_images`` reads back
the same pixels, and rename into place only once complete, so a crash never leaves a
half-written data set. The zip layout follows the one EDM's ``dataset_tool.py`` writes (Karras
et al., 2022).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path

import numpy as np

from deep.data.dataset import check_images
from stability.errors import UsageError

__all__ = ["png_bytes", "save_png_folder", "save_zip"]


def png_bytes(image: np.ndarray) -> bytes:
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


def check_image_target(path) -> None:
    """Refuse an output that `save_zip` or `save_png_folder` would refuse, before any work.

    Parameters
    ----------
    path : str or Path
        A ``.zip`` file that must not exist, or a folder that must not exist or be empty.

    Raises
    ------
    UsageError
        One line naming the output, so that `deep generate` fails before sampling.
    """
    path = Path(path)
    if path.suffix == ".zip":
        if path.exists():
            raise UsageError(f"{path} already exists")
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{path} already exists and is not an empty folder")


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
    check_images(images)
    if len(images) == 0:
        raise UsageError("no images to save")
    path = Path(path)
    check_image_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(images) - 1)))
    tmp = _temporary_sibling(path)
    tmp.mkdir()
    try:
        for i, image in enumerate(images):
            (tmp / f"{i:0{width}d}.png").write_bytes(png_bytes(image))
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
    check_images(images)
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
                    archive.writestr(name, png_bytes(image))
                archive.writestr("dataset.json", json.dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
