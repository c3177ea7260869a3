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

from deep.data.cifar import RestrictedUnpickler, UnsafePickleError
from deep.data.dataset import ImageDataset
from deep.data.images import IMAGE_SUFFIXES, MAX_SIDE
from deep.data.load import DIGITS_DEFAULT_RESOLUTION, PREFIXES, load_images
from deep.data.save import check_image_target, png_bytes, save_png_folder, save_zip

__all__ = [
    "DIGITS_DEFAULT_RESOLUTION",
    "IMAGE_SUFFIXES",
    "MAX_SIDE",
    "PREFIXES",
    "ImageDataset",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "load_images",
    "png_bytes",
    "check_image_target",
    "save_png_folder",
    "save_zip",
]
