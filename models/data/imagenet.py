"""ImageNet (ILSVRC2012) download to the image-folder layout the loaders read.

The download has ``SRC/train/<wnid>/*.JPEG`` class folders (what extracting the train
tarball and then each class's inner tarball gives; Kaggle's ``ILSVRC/Data/CLS-LOC`` is the
same layout) and a FLAT validation set, ``SRC/val/ILSVRC2012_val_00000001.JPEG`` ... The
validation labels come from one of:

- the devkit (``ILSVRC2012_devkit_t12``, a folder or its tarball):
  ``data/ILSVRC2012_validation_ground_truth.txt`` holds one 1-based ILSVRC2012_ID per line,
  line i for ``ILSVRC2012_val_<i, 8 digits>``, and ``data/meta.mat`` maps each
  ILSVRC2012_ID to its WNID (the ``synsets`` struct array);
- a label file: lines ``<image file name> <wnid>``, or a CSV with the header
  ``ImageId,PredictionString`` (Kaggle's ``LOC_val_solution.csv``) whose PredictionString
  starts with the wnid.

Images are matched to labels by file name without extension. A ``SRC/val`` that already
holds class folders is taken as it is (no labels needed).

The result is ``DEST/train/<wnid>/<file>`` and ``DEST/val/<wnid>/<file>``, each file a
symbolic link to its source (absolute path) or a copy. Before anything is written the
layout is checked: class folders in train (1000 expected; fewer is allowed with a
warning), every validation image labelled, every validation class present in train.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from menagerie.models.data.folders import IMAGE_EXTENSIONS, DataError

IMAGENET_CLASSES = 1000
DEVKIT_META = "data/meta.mat"
DEVKIT_GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
KAGGLE_HEADER = ("ImageId", "PredictionString")


@dataclass(frozen=True)
class ImagenetLayout:
    """What to write: (source image, wnid) pairs per split, the train classes, and warnings to show."""

    train: tuple[tuple[Path, str], ...]
    val: tuple[tuple[Path, str], ...]
    classes: tuple[str, ...]
    warnings: tuple[str, ...]


def read_devkit(devkit: str | Path) -> dict[str, str]:
    """Validation labels from the ILSVRC2012 devkit (folder or tarball): image name (no extension) -> wnid.

    ``devkit`` is the devkit folder, a folder holding ``ILSVRC2012_devkit_t12/``, or the tarball.
    """
    meta, ground_truth = _devkit_files(Path(devkit))
    id_to_wnid = _wnid_by_id(meta)
    labels = {}
    for line_number, line in enumerate(ground_truth.decode().split(), start=1):
        if not line.isdigit() or int(line) not in id_to_wnid:
            raise DataError(
                f"devkit {DEVKIT_GROUND_TRUTH} line {line_number}: {line!r} is not an ILSVRC2012_ID of {DEVKIT_META}"
            )
        labels[f"ILSVRC2012_val_{line_number:08d}"] = id_to_wnid[int(line)]
    return labels


def _devkit_files(devkit: Path) -> tuple[bytes, bytes]:
    """The bytes of the devkit's meta.mat and ground-truth file, from a folder or a tarball."""
    if devkit.is_file():
        return _devkit_files_from_tar(devkit)
    for root in (devkit, devkit / "ILSVRC2012_devkit_t12"):
        if (root / DEVKIT_META).is_file() and (root / DEVKIT_GROUND_TRUTH).is_file():
            return (root / DEVKIT_META).read_bytes(), (root / DEVKIT_GROUND_TRUTH).read_bytes()
    raise DataError(f"devkit {devkit}: expected a tarball or a folder holding {DEVKIT_META} and {DEVKIT_GROUND_TRUTH}")


def _devkit_files_from_tar(tarball: Path) -> tuple[bytes, bytes]:
    """The bytes of meta.mat and the ground-truth file inside the devkit tarball."""
    try:
        with tarfile.open(tarball) as archive:
            members = {member.name: member for member in archive.getmembers() if member.isfile()}
            found = [
                next((name for name in members if name.endswith(wanted)), None)
                for wanted in (DEVKIT_META, DEVKIT_GROUND_TRUTH)
            ]
            if None in found:
                raise DataError(f"devkit tarball {tarball} lacks {DEVKIT_META} or {DEVKIT_GROUND_TRUTH}")
            return tuple(archive.extractfile(members[name]).read() for name in found)
    except tarfile.TarError as error:
        raise DataError(f"cannot read devkit tarball {tarball}: {error}") from None


def _wnid_by_id(meta_mat: bytes) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID from meta.mat's ``synsets`` struct array (one record per synset with squeeze_me)."""
    from scipy.io import loadmat

    synsets = loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
    return {int(synset_id): str(wnid) for synset_id, wnid in zip(synsets["ILSVRC2012_ID"], synsets["WNID"])}


def read_val_labels(path: str | Path) -> dict[str, str]:
    """Validation labels from a label file: image name (no extension) -> wnid.

    A first line ``ImageId,PredictionString`` means Kaggle's CSV (the wnid is the first token of
    PredictionString); otherwise every non-blank line is ``<image file name> <wnid>``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"validation label file {path} does not exist")
    lines = path.read_text(encoding="utf-8-sig").splitlines()  # drops a byte-order mark
    if lines and tuple(field.strip() for field in lines[0].split(",")) == KAGGLE_HEADER:
        return _kaggle_labels(lines[1:], path)
    return _plain_labels(lines, path)


def _kaggle_labels(rows: list[str], path: Path) -> dict[str, str]:
    """Labels from the rows of a Kaggle ``ImageId,PredictionString`` CSV (header removed)."""
    labels = {}
    for line_number, row in enumerate(csv.reader(rows), start=2):
        if len(row) != 2 or not row[1].split():
            raise DataError(f"{path} line {line_number}: expected 'ImageId,<wnid> ...', got {','.join(row)!r}")
        labels[Path(row[0].strip()).stem] = row[1].split()[0]
    return labels


def _plain_labels(lines: list[str], path: Path) -> dict[str, str]:
    """Labels from ``<image file name> <wnid>`` lines; blank lines are skipped."""
    labels = {}
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path} line {line_number}: expected '<image file name> <wnid>', got {line!r}")
        labels[Path(fields[0]).stem] = fields[1]
    return labels


def plan_imagenet(src: str | Path, val_labels: dict[str, str] | None) -> ImagenetLayout:
    """Checks the download at ``src`` and pairs every image with its wnid; DataError naming what is missing.

    ``val_labels`` (image name without extension -> wnid) labels a flat ``src/val``; it may be
    None only when ``src/val`` already holds class folders.
    """
    src = Path(src)
    train, classes = _scan_train(src / "train")
    val = _scan_val(src / "val", val_labels)
    _check_val_classes(val, classes)
    warnings = ()
    if len(classes) != IMAGENET_CLASSES:
        warnings = (
            f"{src / 'train'} has {len(classes)} class folders, not ImageNet's {IMAGENET_CLASSES} "
            "(runs on it are in the open division)",
        )
    return ImagenetLayout(tuple(train), tuple(val), classes, warnings)


def _images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted (``os.scandir``: no stat per file on most file systems)."""
    with os.scandir(folder) as entries:
        return sorted(
            Path(entry.path)
            for entry in entries
            if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file()
        )


def _class_folders(folder: Path) -> list[Path]:
    """The sub-folders of ``folder``, sorted."""
    with os.scandir(folder) as entries:
        return sorted(Path(entry.path) for entry in entries if entry.is_dir())


def _scan_train(train: Path) -> tuple[list[tuple[Path, str]], tuple[str, ...]]:
    """(image, wnid) pairs and the class names of the ``train/<wnid>/`` folders."""
    if not train.is_dir():
        raise DataError(f"training folder {train} does not exist")
    folders = _class_folders(train)
    if not folders:
        raise DataError(_no_train_classes(train))
    images = {folder.name: _images(folder) for folder in folders}
    empty = [name for name, found in images.items() if not found]
    if empty:
        raise DataError(f"{len(empty)} class folders of {train} hold no images: {_first(empty)}")
    return [(image, name) for name, found in images.items() for image in found], tuple(images)


def _no_train_classes(train: Path) -> str:
    """The error for a train folder without class folders, saying what it holds instead."""
    tarballs = sorted(train.glob("*.tar"))
    if tarballs:
        return (
            f"{train} holds {len(tarballs)} .tar files but no class folders: extract each class's tarball into "
            "a folder of its name (cd train; for f in *.tar; do mkdir ${f%.tar}; tar -xf $f -C ${f%.tar}; done)"
        )
    images = _images(train)
    if images:
        return f"{train} is flat ({len(images)} images, no class folders): expected {train}/<wnid>/<image>"
    return f"{train} has no class folders: expected {train}/<wnid>/<image>"


def _scan_val(val: Path, labels: dict[str, str] | None) -> list[tuple[Path, str]]:
    """(image, wnid) pairs of ``val``: flat images labelled by ``labels``, or its class folders."""
    if not val.is_dir():
        raise DataError(f"validation folder {val} does not exist")
    images = _images(val)
    if not images:
        folders = _class_folders(val)
        if not folders:
            raise DataError(f"validation folder {val} has no images")
        return [(image, folder.name) for folder in folders for image in _images(folder)]
    if labels is None:
        raise DataError(
            f"validation folder {val} is flat ({len(images)} images): give its labels with --devkit or --val-labels"
        )
    unlabelled = [image.name for image in images if image.stem not in labels]
    if unlabelled:
        raise DataError(f"{len(unlabelled)} of {len(images)} validation images have no label: {_first(unlabelled)}")
    return [(image, labels[image.stem]) for image in images]


def _check_val_classes(val: list[tuple[Path, str]], classes: tuple[str, ...]) -> None:
    """DataError naming the validation classes that have no training folder."""
    known = set(classes)
    missing = sorted({wnid for _, wnid in val if wnid not in known})
    if missing:
        count = sum(wnid not in known for _, wnid in val)
        raise DataError(
            f"{count} validation images belong to {len(missing)} classes without a training folder: {_first(missing)}"
        )


def _first(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` names, comma-separated, with '...' when there are more."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def write_imagenet(layout: ImagenetLayout, dest: str | Path, copy: bool = False, progress=None) -> None:
    """Writes ``dest/train/<wnid>/<file>`` and ``dest/val/<wnid>/<file>``: symbolic links to the sources, or copies.

    DataError when ``dest/train`` or ``dest/val`` exists already (nothing is overwritten).
    ``progress(done)`` is called every 1000 images and at the end, counting train then val.
    """
    dest = Path(dest)
    for split in ("train", "val"):
        if (dest / split).exists():
            raise DataError(f"{dest / split} exists already: choose a new DEST")
    done = 0
    for split, pairs in (("train", layout.train), ("val", layout.val)):
        for wnid in sorted({wnid for _, wnid in pairs}):
            (dest / split / wnid).mkdir(parents=True)
        for source, wnid in pairs:
            _place(source, dest / split / wnid / source.name, copy)
            done += 1
            if progress and done % 1000 == 0:
                progress(done)
    if progress:
        progress(done)


def _place(source: Path, target: Path, copy: bool) -> None:
    """Copies ``source`` to ``target``, or links ``target`` to ``source``'s absolute path."""
    if copy:
        shutil.copy2(source, target)
    else:
        target.symlink_to(source.resolve())
