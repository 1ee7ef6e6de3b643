"""Image folders: reading their layout, and writing synthetic and digits datasets.

An image folder is ``ROOT/<class>/<image>.jpg`` (torchvision's ImageFolder layout);
classes are the sub-folder names in sorted order, labelled 0, 1, ...; images are the
files with an image extension, sorted by path. A dataset root for training holds
``train/`` and ``val/`` image folders (ImageNet's layout) and, once converted,
``train.beton`` and ``val.beton`` for FFCV.

Synthetic images are learnable on purpose: every class has its own colour, and each
image is that colour plus smooth random texture, so the label can be read off an
image's mean colour after any crop or flip (the loader tests rely on this) and a
model can learn them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from menagerie.harness.results import write_bytes_atomically

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(ValueError):
    """A dataset that cannot be used: missing, empty, or holding an unreadable image."""


@dataclass(frozen=True)
class ImageFolder:
    """The layout of an image folder: class names, and (path, label) pairs sorted by path."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]


def scan_imagefolder(root: str | Path) -> ImageFolder:
    """Reads ``root``'s layout; DataError when it is missing, has no class folders or no images."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    classes = tuple(sorted(entry.name for entry in root.iterdir() if entry.is_dir()))
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders (expected ROOT/<class>/<image>.jpg)")
    samples = tuple(
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    )
    if not samples:
        raise DataError(f"image folder {root} has no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return ImageFolder(root, classes, samples)


def open_rgb(path: Path) -> Image.Image:
    """The image at ``path`` decoded to RGB; DataError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot decode image {path}: {error}") from None


def check_decodable(path: Path) -> None:
    """DataError naming ``path`` if it cannot be decoded; JPEGs are decoded at reduced scale (draft mode) for speed."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot decode image {path}: {error}") from None


def class_colour(label: int, classes: int) -> np.ndarray:
    """The RGB colour (0-255, float) of a synthetic class: evenly spaced hues, well apart for up to ~50 classes."""
    hue = label / classes
    angles = 2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3]))
    return 128 + 90 * np.cos(angles)


def synthetic_image(label: int, classes: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 image: the class colour plus smooth texture of amplitude ~20."""
    coarse = rng.normal(0, 20, (max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    texture = np.stack(
        [
            np.asarray(Image.fromarray(coarse[..., channel]).resize((width, height), Image.BILINEAR))
            for channel in range(3)
        ],
        axis=-1,
    )
    return np.clip(class_colour(label, classes) + texture, 0, 255).astype(np.uint8)


def synthetic_sides(size: int | tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) of the next synthetic image: ``size`` x ``size``, or each side drawn uniformly from the
    inclusive range ``size = (smallest, largest)`` (nothing is drawn from ``rng`` for a fixed size)."""
    if isinstance(size, int):
        return size, size
    height, width = rng.integers(size[0], size[1] + 1, size=2)
    return int(height), int(width)


def check_synthetic_size(size: int | tuple[int, int]) -> None:
    """DataError unless ``size`` is a side >= 8 or a range ``(smallest, largest)`` with 8 <= smallest <= largest."""
    smallest, largest = (size, size) if isinstance(size, int) else size
    if not 8 <= smallest <= largest:
        raise DataError(f"image sides must be >= 8 and the smallest <= the largest; got {size}")


def write_synthetic(
    root: str | Path,
    classes: int,
    images_per_class: int,
    size: int | tuple[int, int],
    seed: int = 0,
    quality: int = 90,
    progress=None,
) -> int:
    """Writes ``classes * images_per_class`` JPEGs under ``root/<class>/``; returns the count.

    ``size`` is the side of every (square) image, or a range ``(smallest, largest)``: then each
    image's height and width are drawn independently and uniformly from it (inclusive), like
    the varied sizes of real datasets. Images, and their sizes, are fixed by ``seed``.
    ``progress(done)`` is called after each class.
    """
    if classes < 2 or images_per_class < 1:
        raise DataError(f"need classes >= 2 and images_per_class >= 1; got {classes}, {images_per_class}")
    check_synthetic_size(size)
    rng = np.random.default_rng(seed)
    root = Path(root)
    for label in range(classes):
        folder = root / f"class{label:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(images_per_class):
            image = synthetic_image(label, classes, *synthetic_sides(size, rng), rng)
            save_jpeg(Image.fromarray(image), folder / f"{index:06d}.jpg", quality)
        if progress:
            progress((label + 1) * images_per_class)
    return classes * images_per_class


def write_digits(root: str | Path, size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> tuple[int, int]:
    """Writes scikit-learn's 8x8 handwritten digits (1,797 real images, 10 classes) as ``root/train`` and ``root/val``.

    Each digit is upsampled to ``size`` x ``size`` (bicubic), grey on RGB, saved as JPEG
    quality 95; a seeded, stratified split puts ``val_fraction`` of every class in val.
    Returns the (train, val) counts.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        val_count = round(len(indices) * val_fraction)
        for split, chosen in (("val", indices[:val_count]), ("train", indices[val_count:])):
            folder = Path(root) / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                grey = (digits.images[index] * (255 / 16)).astype(np.uint8)  # pixel values are 0..16
                image = Image.fromarray(grey).resize((size, size), Image.BICUBIC).convert("RGB")
                save_jpeg(image, folder / f"{index:04d}.jpg", 95)
                counts[split] += 1
    return counts["train"], counts["val"]


def save_jpeg(image: Image.Image, path: Path, quality: int) -> None:
    """``image`` as a JPEG at ``path``, written atomically: an interrupted generator leaves no half image."""
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=quality)
    write_bytes_atomically(encoded.getvalue(), path)
