"""The image data set of the image-scale loop: uint8 arrays (N, C, H, W) and their labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stability.errors import UsageError

__all__ = ["ImageDataset", "check_images", "convert_channels"]


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
        check_images(self.images)
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


def check_images(images) -> None:
    """Refuse what is not a uint8 array of images of shape (N, C, H, W) with C = 1 or 3.

    Parameters
    ----------
    images : object
        The candidate.

    Raises
    ------
    UsageError
        Naming the dtype and shape (or the type) that was given.
    """
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


def convert_channels(images: np.ndarray, channels: int | None) -> np.ndarray:
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
