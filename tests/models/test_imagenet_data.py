"""ImageNet's download to class folders (``menagerie data imagenet``), synthetic images of varied sizes, and
``to-ffcv --max-res``: all on tiny fake data."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from menagerie.harness.cli import main
from menagerie.models.data.folders import scan_imagefolder
from menagerie.models.data.imagenet import read_devkit

WNIDS = ("n01440764", "n01443537", "n01484850")
VAL_WNIDS = ("n01484850", "n01440764", "n01443537", "n01440764")  # the labels of val images 1..4
SYNSET_FIELDS = (
    "ILSVRC2012_ID",
    "WNID",
    "words",
    "gloss",
    "num_children",
    "children",
    "wordnet_height",
    "num_train_images",
)


def error_text(capsys) -> str:
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


def write_jpeg(path, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)


@pytest.fixture
def download(tmp_path):
    """A tiny ILSVRC2012 download: SRC/train/<wnid>/ with 2 images per class, a flat SRC/val with 4 images."""
    src = tmp_path / "src"
    for wnid in WNIDS:
        for index in range(2):
            write_jpeg(src / "train" / wnid / f"{wnid}_{index}.JPEG")
    for index in range(1, len(VAL_WNIDS) + 1):
        write_jpeg(src / "val" / f"ILSVRC2012_val_{index:08d}.JPEG")
    return src


def write_devkit(root, ground_truth_wnids=VAL_WNIDS):
    """A devkit folder like ILSVRC2012_devkit_t12: data/meta.mat's ``synsets`` struct array (the real file's
    fields, leaves with IDs 1..N plus one inner synset) and the ground truth as 1-based IDs, one per line."""
    synsets = np.zeros((len(WNIDS) + 1, 1), dtype=[(field, object) for field in SYNSET_FIELDS])
    # IDs in the real file are not in the wnid's sorted order; reverse them to catch a positional mapping
    for row, (synset_id, wnid) in enumerate(zip((3, 2, 1), WNIDS)):
        synsets[row, 0] = (synset_id, wnid, f"words {wnid}", "gloss", 0, np.zeros((0,)), 0, 1300)
    synsets[-1, 0] = (1001, "n00001740", "entity", "gloss", 3, np.array([1, 2, 3]), 19, 0)
    (root / "data").mkdir(parents=True)
    savemat(root / "data" / "meta.mat", {"synsets": synsets})
    ids = {wnid: synset_id for synset_id, wnid in zip((3, 2, 1), WNIDS)}
    (root / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{ids[wnid]}\n" for wnid in ground_truth_wnids)
    )
    return root


def val_classes(dest) -> list[str]:
    """The class of each validation image, in image order."""
    return [path.parent.name for path in sorted((dest / "val").rglob("*.JPEG"), key=lambda path: path.name)]


def test_devkit_folder_and_tarball_give_the_same_labels(tmp_path):
    devkit = write_devkit(tmp_path / "ILSVRC2012_devkit_t12")
    with tarfile.open(tmp_path / "devkit.tar.gz", "w:gz") as archive:
        archive.add(devkit, arcname="ILSVRC2012_devkit_t12")
    expected = {f"ILSVRC2012_val_{index:08d}": wnid for index, wnid in enumerate(VAL_WNIDS, start=1)}
    assert read_devkit(devkit) == expected
    assert read_devkit(tmp_path) == expected  # the folder holding ILSVRC2012_devkit_t12
    assert read_devkit(tmp_path / "devkit.tar.gz") == expected


def test_imagenet_from_devkit_links_class_folders(download, tmp_path, capsys):
    devkit = write_devkit(tmp_path / "devkit")
    dest = tmp_path / "imagenet"
    assert main(["data", "imagenet", str(download), str(dest), "--devkit", str(devkit)]) == 0
    assert val_classes(dest) == list(VAL_WNIDS)
    train = scan_imagefolder(dest / "train")
    assert train.classes == WNIDS and len(train.samples) == 6
    link = dest / "val" / "n01484850" / "ILSVRC2012_val_00000001.JPEG"
    assert link.is_symlink() and link.resolve() == (download / "val" / link.name).resolve()
    assert "3 class folders, not ImageNet's 1000" in error_text(capsys)


def test_imagenet_from_label_file_copies(download, tmp_path):
    labels = tmp_path / "val_labels.txt"
    labels.write_text("".join(f"ILSVRC2012_val_{index:08d}.JPEG {wnid}\n" for index, wnid in enumerate(VAL_WNIDS, 1)))
    dest = tmp_path / "imagenet"
    assert main(["data", "imagenet", str(download), str(dest), "--val-labels", str(labels), "--copy"]) == 0
    assert val_classes(dest) == list(VAL_WNIDS)
    assert not any(path.is_symlink() for path in dest.rglob("*"))


def test_imagenet_from_kaggle_csv(download, tmp_path):
    labels = tmp_path / "LOC_val_solution.csv"
    rows = [f"ILSVRC2012_val_{index:08d},{wnid} 1 2 30 40 {wnid} 5 6 70 80 " for index, wnid in enumerate(VAL_WNIDS, 1)]
    labels.write_text("ImageId,PredictionString\n" + "\n".join(reversed(rows)) + "\n")
    dest = tmp_path / "imagenet"
    assert main(["data", "imagenet", str(download), str(dest), "--val-labels", str(labels)]) == 0
    assert val_classes(dest) == list(VAL_WNIDS)


@pytest.mark.parametrize(
    "labels, message",
    [
        ("ILSVRC2012_val_00000001.JPEG n01484850\n", "3 of 4 validation images have no label: ILSVRC2012_val_00000002"),
        (
            "".join(f"ILSVRC2012_val_{index:08d}.JPEG n09999999\n" for index in range(1, 5)),
            "4 validation images belong to 1 classes without a training folder: n09999999",
        ),
        ("ILSVRC2012_val_00000001.JPEG\n", "line 1: expected '<image file name> <wnid>'"),
    ],
)
def test_imagenet_bad_labels_exit_2(download, tmp_path, capsys, labels, message):
    label_file = tmp_path / "labels.txt"
    label_file.write_text(labels)
    assert main(["data", "imagenet", str(download), str(tmp_path / "out"), "--val-labels", str(label_file)]) == 2
    assert message in error_text(capsys)
    assert not (tmp_path / "out").exists()


def test_imagenet_flat_train_and_unlabelled_val_exit_2(download, tmp_path, capsys):
    assert main(["data", "imagenet", str(download), str(tmp_path / "out")]) == 2
    assert "is flat (4 images): give its labels with --devkit or --val-labels" in error_text(capsys)
    flat = tmp_path / "flat"
    for index in range(3):
        write_jpeg(flat / "train" / f"n01440764_{index}.JPEG")
    write_jpeg(flat / "val" / "ILSVRC2012_val_00000001.JPEG")
    devkit = str(write_devkit(tmp_path / "dk"))
    assert main(["data", "imagenet", str(flat), str(tmp_path / "out"), "--devkit", devkit]) == 2
    assert "is flat (3 images, no class folders)" in error_text(capsys)
    (flat / "train" / "n01440764_0.JPEG").rename(flat / "train" / "n01440764.tar")
    assert main(["data", "imagenet", str(flat), str(tmp_path / "out"), "--devkit", devkit]) == 2
    assert "holds 1 .tar files but no class folders" in error_text(capsys)


def test_imagenet_refuses_an_existing_dest(download, tmp_path, capsys):
    devkit = write_devkit(tmp_path / "devkit")
    (tmp_path / "out" / "train").mkdir(parents=True)
    assert main(["data", "imagenet", str(download), str(tmp_path / "out"), "--devkit", str(devkit)]) == 2
    assert "exists already" in error_text(capsys)


def image_sizes(folder) -> set[tuple[int, int]]:
    sizes = set()
    for path in folder.rglob("*.jpg"):
        with Image.open(path) as image:
            sizes.add(image.size)
    return sizes


def test_synth_size_range_gives_varied_seeded_sizes(tmp_path):
    for name in ("a", "b"):
        assert (
            main(
                [
                    "data",
                    "synth",
                    str(tmp_path / name),
                    "--classes",
                    "2",
                    "--train-per-class",
                    "6",
                    "--val-per-class",
                    "2",
                    "--min-size",
                    "16",
                    "--max-size",
                    "40",
                ]
            )
            == 0
        )
    sizes = image_sizes(tmp_path / "a")
    assert len(sizes) > 4 and all(16 <= side <= 40 for size in sizes for side in size)
    assert len({width for width, _ in sizes}) > 1 and len({height for _, height in sizes}) > 1
    assert sizes == image_sizes(tmp_path / "b")  # same seed, same sizes
    assert scan_imagefolder(tmp_path / "a" / "train").labels == [0] * 6 + [1] * 6


@pytest.mark.parametrize(
    "options, message",
    [
        (["--min-size", "40", "--max-size", "16"], "--min-size 40 is larger than --max-size 16"),
        (["--size", "32", "--min-size", "16", "--max-size", "40"], "either --size or --min-size with --max-size"),
        (["--min-size", "16"], "--min-size and --max-size go together"),
        (["--min-size", "4", "--max-size", "16"], "image sides must be >= 8"),
    ],
)
def test_synth_rejects_bad_size_options(tmp_path, capsys, options, message):
    assert main(["data", "synth", str(tmp_path / "syn"), "--classes", "2", *options]) == 2
    assert message in error_text(capsys)


def test_to_ffcv_max_res_caps_the_longer_side(tmp_path):
    pytest.importorskip("ffcv")
    from ffcv.reader import Reader

    assert (
        main(
            [
                "data",
                "synth",
                str(tmp_path / "syn"),
                "--classes",
                "2",
                "--train-per-class",
                "6",
                "--val-per-class",
                "1",
                "--min-size",
                "16",
                "--max-size",
                "48",
            ]
        )
        == 0
    )
    beton = tmp_path / "train.beton"
    assert (
        main(["data", "to-ffcv", str(tmp_path / "syn" / "train"), str(beton), "--max-res", "24", "--workers", "1"]) == 0
    )
    reader = Reader(str(beton))
    images = reader.metadata[f"f{reader.field_names.index('image')}"]
    stored = list(zip(images["width"].tolist(), images["height"].tolist()))
    originals = []
    for path, _ in scan_imagefolder(tmp_path / "syn" / "train").samples:  # the .beton's order
        with Image.open(path) as image:
            originals.append(image.size)
    assert max(max(size) for size in originals) > 24
    for original, kept in zip(originals, stored, strict=True):
        if max(original) <= 24:
            assert kept == original
        else:  # both sides scaled by 24 / the longer side, truncated to whole pixels: the aspect kept
            assert max(kept) <= 24
            assert all(0 <= side * 24 / max(original) - new_side < 1 for side, new_side in zip(original, kept))
