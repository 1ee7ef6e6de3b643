"""Image folder to FFCV ``.beton``: each image stored as JPEG or as raw pixels beside its int label.

Images keep their size unless ``max_resolution`` caps the longer side. ``write_mode``
is FFCV's: ``"jpg"`` re-encodes every image as JPEG at ``jpeg_quality`` (the FFCV
loader then decodes JPEG like the torchvision and DALI loaders do); ``"raw"`` stores
uncompressed RGB (no decoding when loading, several times the disk); ``"proportion"``
compresses each image with probability ``compress_probability`` (ffcv-imagenet's
configurations: max resolution 500, probability 0.5, quality 90). Labels are the
image folder's (sorted class names). ``beton_storage`` counts how a file stores its
images, so a throughput figure can say what the loader decoded.

Every image is test-decoded first (JPEGs at reduced scale, in threads): FFCV's writer
waits forever when one of its worker processes fails, so an unreadable image must be
found, and named, before it starts.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from menagerie.models.data.folders import DataError, ImageFolder, check_decodable, open_rgb, scan_imagefolder


class _Images:
    """(image, label) by index, the indexable dataset FFCV's writer reads in its worker processes."""

    def __init__(self, folder: ImageFolder):
        self.samples = folder.samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        return open_rgb(path), label


WRITE_MODES = ("jpg", "raw", "proportion")


def to_ffcv(
    image_folder: str | Path,
    out: str | Path,
    max_resolution: int | None = None,
    jpeg_quality: int = 90,
    workers: int = 2,
    write_mode: str = "jpg",
    compress_probability: float = 0.5,
) -> int:
    """Writes ``image_folder`` to ``out`` (a ``.beton`` file); returns the image count.

    DataError for a missing or empty folder, an undecodable image, or an ``out`` whose folder is missing.
    """
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    folder = scan_imagefolder(image_folder)
    out = Path(out)
    if not out.parent.is_dir():
        raise DataError(f"cannot write {out}: folder {out.parent} does not exist")
    if not 1 <= jpeg_quality <= 100:
        raise DataError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if write_mode not in WRITE_MODES:
        raise DataError(f"write_mode must be one of {', '.join(WRITE_MODES)}, got {write_mode!r}")
    if not 0 <= compress_probability <= 1:
        raise DataError(f"compress_probability must be in [0, 1], got {compress_probability}")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(check_decodable, [path for path, _ in folder.samples]))
    partial = Path(out).with_name(f".{Path(out).name}.partial")  # FFCV writes in place: renamed when complete
    writer = DatasetWriter(
        str(partial),
        {
            "image": RGBImageField(
                write_mode=write_mode,
                max_resolution=max_resolution,
                jpeg_quality=jpeg_quality,
                compress_probability=compress_probability,
            ),
            "label": IntField(),
        },
        num_workers=max(1, workers),
    )
    writer.from_indexed_dataset(_Images(folder))
    os.replace(partial, out)
    return len(folder.samples)


def beton_storage(path: str | Path) -> dict[str, int]:
    """How many images of an FFCV ``.beton`` (written by ``to_ffcv``) are stored as JPEG and how many raw."""
    import numpy as np
    from ffcv.fields.rgb_image import IMAGE_MODES
    from ffcv.reader import Reader

    modes = Reader(str(path)).metadata["f0"]["mode"]
    return {name: int(np.count_nonzero(modes == code)) for name, code in IMAGE_MODES.items()}
