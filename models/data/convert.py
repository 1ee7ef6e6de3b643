"""Image folder to FFCV ``.beton``: every image stored as JPEG beside its int label.

Images keep their size unless ``max_resolution`` caps the longer side; each is
re-encoded as JPEG at ``jpeg_quality``, so the FFCV loader decodes JPEG like the
torchvision and DALI loaders do. Labels are the image folder's (sorted class names).

Every image is test-decoded first (JPEGs at reduced scale, in threads): FFCV's writer
waits forever when one of its worker processes fails, so an unreadable image must be
found, and named, before it starts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from models.data.folders import DataError, ImageFolder, check_decodable, open_rgb, scan_imagefolder


class _Images:
    """(image, label) by index, the indexable dataset FFCV's writer reads in its worker processes."""

    def __init__(self, folder: ImageFolder):
        self.samples = folder.samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        return open_rgb(path), label


def to_ffcv(image_folder: str | Path, out: str | Path, max_resolution: int | None = None, jpeg_quality: int = 90,
            workers: int = 2) -> int:
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
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(check_decodable, [path for path, _ in folder.samples]))
    writer = DatasetWriter(str(out), {
        "image": RGBImageField(write_mode="jpg", max_resolution=max_resolution, jpeg_quality=jpeg_quality),
        "label": IntField(),
    }, num_workers=max(1, workers))
    writer.from_indexed_dataset(_Images(folder))
    return len(folder.samples)
