"""The three loaders (torchvision, FFCV, DALI on the CPU) on one synthetic dataset.

One contract, correct labels, clear errors.

Synthetic classes have distinct colours, so a batch's labels can be checked against
its pixels whatever the crop or flip. None of this is skipped: CI installs all three.
"""

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from menagerie.models.data.convert import beton_storage, to_ffcv
from menagerie.models.data.folders import DataError, class_colour, scan_imagefolder, write_synthetic
from menagerie.models.data.loader_throughput import timed_window
from menagerie.models.data.loaders import CENTRE_FRACTION, LOADERS, MEAN, STD, DALILoader, make_loader

CLASSES, PER_CLASS, SIZE, BATCH = 4, 6, 20, 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic(root / "train", CLASSES, PER_CLASS, size=48, seed=1)
    to_ffcv(root / "train", root / "train.beton", workers=1)
    return root


def source(dataset, kind):
    return dataset / "train.beton" if kind == "ffcv" else dataset / "train"


def colour_labels(images: torch.Tensor) -> torch.Tensor:
    """The class whose colour is nearest to each image's mean colour."""
    pixels = images * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    colours = torch.tensor(np.stack([class_colour(c, CLASSES) for c in range(CLASSES)]), dtype=torch.float32)
    return torch.cdist(pixels.mean((2, 3)), colours).argmin(1)


def epoch(loader, number=0):
    """The epoch's batches, images copied as they arrive (FFCV on the CPU reuses its buffers)."""
    loader.set_epoch(number)
    return [(images.clone(), labels) for images, labels in loader]


@pytest.fixture(scope="module")
def batches(dataset):
    """Per loader: (train loader, epoch-0 train batches, epoch-1 train batches, evaluation batches)."""
    found = {}
    for kind in LOADERS:
        train = make_loader(kind, source(dataset, kind), batch_size=BATCH, size=SIZE, train=True, workers=1, seed=3)
        val = make_loader(kind, source(dataset, kind), batch_size=BATCH, size=SIZE, train=False, workers=1)
        found[kind] = (train, epoch(train, 0), epoch(train, 1), epoch(val))
    return found


@pytest.mark.parametrize("kind", LOADERS)
def test_batches_follow_the_contract(batches, kind):
    train, first, _, evaluation = batches[kind]
    assert len(train) == len(first) == CLASSES * PER_CLASS // BATCH
    assert train.samples == len(first) * BATCH and train.classes == CLASSES
    for images, labels in first + evaluation:
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape[1:] == (3, SIZE, SIZE) and images.shape[0] == labels.shape[0]
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(colour_labels(images), labels)
    assert [labels.numel() for _, labels in first] == [BATCH] * len(first)
    assert sorted(torch.cat([labels for _, labels in evaluation]).tolist()) == sorted(
        label for label in range(CLASSES) for _ in range(PER_CLASS)
    )


def reference_channel_statistics(path) -> torch.Tensor:
    """Per-channel (mean, std) of the image's centre crop (the evaluation crop's region), normalized in float64."""
    pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float64))
    side = round(min(pixels.shape[:2]) * CENTRE_FRACTION)
    top, left = (pixels.shape[0] - side) // 2, (pixels.shape[1] - side) // 2
    crop = (pixels[top : top + side, left : left + side] - torch.tensor(MEAN, dtype=torch.float64)) / torch.tensor(
        STD, dtype=torch.float64
    )
    return torch.stack([crop.mean((0, 1)), crop.std((0, 1))])


@pytest.mark.parametrize("kind", LOADERS)
def test_evaluation_images_are_normalized_like_the_reference(dataset, batches, kind):
    """Each evaluation image's per-channel mean and spread match a float64 normalization of the decoded file."""
    paths = [path for path, _ in scan_imagefolder(dataset / "train").samples]
    images = torch.cat([images for images, _ in batches[kind][3]])
    found = torch.stack([images.mean((2, 3)), images.std((2, 3))], 1).double()
    expected = torch.stack([reference_channel_statistics(path) for path in paths])
    assert found.shape == expected.shape == (len(paths), 2, 3)
    torch.testing.assert_close(found[:, 0], expected[:, 0], atol=0.03, rtol=0)
    torch.testing.assert_close(found[:, 1], expected[:, 1], atol=0.03, rtol=0.15)


def test_dali_builds_its_pipeline_once(dataset, monkeypatch):
    """Two epochs, the first abandoned after one batch, reuse one pipeline and still follow the shared order."""
    builds = []
    build = DALILoader._build_pipeline
    monkeypatch.setattr(DALILoader, "_build_pipeline", lambda self: builds.append(1) or build(self))
    dali = make_loader("dali", dataset / "train", batch_size=BATCH, size=SIZE, train=True, workers=1, seed=3)
    reference = make_loader(
        "torchvision", dataset / "train", batch_size=BATCH, size=SIZE, train=True, workers=0, seed=3
    )
    next(iter(dali))
    assert [labels.tolist() for _, labels in epoch(dali, 1)] == [labels.tolist() for _, labels in epoch(reference, 1)]
    assert len(builds) == 1


class CountingLoader:
    """A stand-in loader of ``per_epoch`` batches whose every batch advances a fake clock by one second."""

    def __init__(self, per_epoch: int):
        self.per_epoch, self.now, self.delivered, self.epochs = per_epoch, 0.0, 0, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        for _ in range(self.per_epoch):
            self.now += 1
            self.delivered += 1
            yield object()


def test_throughput_times_only_the_window_after_the_warm_up():
    loader = CountingLoader(per_epoch=3)
    seconds = timed_window(loader, warmup_batches=4, batches=4, clock=lambda: loader.now)
    assert seconds == 4  # batches 5..8, across the boundary of epochs 1 and 2
    assert loader.epochs == [0, 1, 2] and loader.delivered == 9  # the last epoch finished untimed


def test_loaders_agree_on_order_and_shapes(batches):
    reference = batches["torchvision"]
    for kind in LOADERS:
        for part in (1, 2, 3):
            assert [labels.tolist() for _, labels in batches[kind][part]] == [
                labels.tolist() for _, labels in reference[part]
            ], kind
            assert [images.shape for images, _ in batches[kind][part]] == [
                images.shape for images, _ in reference[part]
            ], kind


def test_epochs_are_reshuffled(batches):
    _, first, second, _ = batches["torchvision"]
    assert [labels.tolist() for _, labels in first] != [labels.tolist() for _, labels in second]


def test_shards_split_the_data(dataset):
    evaluation = [
        make_loader(
            "torchvision", dataset / "train", batch_size=5, size=SIZE, train=False, workers=0, rank=rank, world_size=2
        )
        for rank in (0, 1)
    ]
    assert [loader.samples for loader in evaluation] == [12, 12]
    assert sum(labels.numel() for loader in evaluation for _, labels in loader) == CLASSES * PER_CLASS
    train = [
        make_loader(
            "torchvision", dataset / "train", batch_size=4, size=SIZE, train=True, workers=0, rank=rank, world_size=2
        )
        for rank in (0, 1)
    ]
    whole = make_loader("torchvision", dataset / "train", batch_size=8, size=SIZE, train=True, workers=0)
    halves = [epoch(loader) for loader in train]
    for step, (_, labels) in enumerate(epoch(whole)):  # rank r holds every other image of the global batch
        assert labels[0::2].tolist() == halves[0][step][1].tolist()
        assert labels[1::2].tolist() == halves[1][step][1].tolist()


@pytest.mark.parametrize("kind", ["torchvision", "dali"])
def test_missing_and_empty_folders_are_reported(tmp_path, kind):
    with pytest.raises(DataError, match="does not exist"):
        make_loader(kind, tmp_path / "nowhere", batch_size=2, size=SIZE, train=True)
    with pytest.raises(DataError, match="no class sub-folders"):
        make_loader(kind, tmp_path, batch_size=2, size=SIZE, train=True)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="has no images"):
        make_loader(kind, tmp_path, batch_size=2, size=SIZE, train=True)


def test_ffcv_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        make_loader("ffcv", tmp_path / "none.beton", batch_size=2, size=SIZE, train=True)
    (tmp_path / "junk.beton").write_bytes(b"not a beton file at all" * 10)
    with pytest.raises(DataError, match="not a readable FFCV"):
        make_loader("ffcv", tmp_path / "junk.beton", batch_size=2, size=SIZE, train=True)


@pytest.fixture()
def corrupt_folder(tmp_path):
    write_synthetic(tmp_path / "data", 2, 2, size=32)
    (tmp_path / "data" / "class0001" / "000001.jpg").write_bytes(b"\xff\xd8\xff garbage, not a JPEG")
    return tmp_path / "data"


@pytest.mark.parametrize("kind", ["torchvision", "dali"])
def test_corrupt_image_is_named(corrupt_folder, kind):
    loader = make_loader(
        kind, corrupt_folder, batch_size=4, size=SIZE, train=False, workers=0 if kind == "torchvision" else 1
    )
    with pytest.raises(DataError, match="decode"):
        list(loader)


def test_corrupt_image_stops_ffcv_conversion(corrupt_folder, tmp_path):
    with pytest.raises(DataError, match="000001.jpg"):
        to_ffcv(corrupt_folder, tmp_path / "out.beton", workers=1)


def test_unknown_loader_and_small_datasets_are_rejected(dataset):
    with pytest.raises(ValueError, match="unknown loader 'pillow'.*torchvision, ffcv, dali"):
        make_loader("pillow", dataset / "train", batch_size=2, size=SIZE, train=True)
    with pytest.raises(DataError, match="cannot fill one batch"):
        make_loader("torchvision", dataset / "train", batch_size=100, size=SIZE, train=True)


def test_scan_orders_classes_and_files(dataset):
    folder = scan_imagefolder(dataset / "train")
    assert folder.classes == tuple(f"class{c:04d}" for c in range(CLASSES))
    assert folder.labels == sorted(folder.labels)


def test_throughput_command_writes_a_record(dataset, tmp_path):
    import json
    import statistics

    from menagerie.harness.cli import main

    out = tmp_path / "records"
    assert (
        main(
            [
                "data",
                "throughput",
                str(dataset),
                "--size",
                "16",
                "--batch-size",
                "4",
                "--batches",
                "2",
                "--workers",
                "1",
                "--rounds",
                "3",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(next(out.glob("loaders-*.json")).read_text())
    assert record["benchmark"] == "loaders.throughput" and record["provenance"]["device_type"] == "cpu"
    assert record["config"]["rounds"] == 3
    assert [row["loader"] for row in record["rows"]] == list(LOADERS)
    for row in record["rows"]:
        assert row["batches"] == 2 and row["cores"] >= 1 and len(row["rounds_images_per_s"]) == 3
        assert row["images_per_s"] == statistics.median(row["rounds_images_per_s"]) > 0
        assert row["storage"] == ({"jpg": CLASSES * PER_CLASS, "raw": 0} if row["loader"] == "ffcv" else None)
    assert [row["speedup_vs_torchvision"] for row in record["rows"]][0] == 1


@pytest.mark.parametrize("mode, expected_raw", [("jpg", 0), ("raw", CLASSES * PER_CLASS), ("proportion", None)])
def test_ffcv_write_modes_store_as_asked(dataset, tmp_path, mode, expected_raw):
    out = tmp_path / f"{mode}.beton"
    assert to_ffcv(dataset / "train", out, workers=1, write_mode=mode, compress_probability=0.5) == CLASSES * PER_CLASS
    storage = beton_storage(out)
    assert storage["jpg"] + storage["raw"] == CLASSES * PER_CLASS
    if expected_raw is not None:
        assert storage["raw"] == expected_raw
    loader = make_loader("ffcv", out, batch_size=BATCH, size=SIZE, train=False, workers=1)
    labels = torch.cat([labels for _, labels in epoch(loader)])
    images = torch.cat([images for images, _ in epoch(loader)])
    assert torch.equal(labels, colour_labels(images))  # stored raw or as JPEG, every image keeps its class


def test_ffcv_write_mode_errors(dataset, tmp_path):
    with pytest.raises(DataError, match="write_mode must be one of jpg, raw, proportion"):
        to_ffcv(dataset / "train", tmp_path / "out.beton", write_mode="png")
    with pytest.raises(DataError, match="compress_probability must be in"):
        to_ffcv(dataset / "train", tmp_path / "out.beton", write_mode="proportion", compress_probability=1.5)


def test_stages_command_accounts_for_each_loader(dataset, tmp_path):
    import json

    from menagerie.harness.cli import main

    out = tmp_path / "records"
    assert (
        main(
            [
                "data",
                "stages",
                str(dataset),
                "--size",
                "16",
                "--batch-size",
                "4",
                "--images",
                "8",
                "--rounds",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(next(out.glob("loader-stages-*.json")).read_text())
    assert record["benchmark"] == "loaders.stages" and record["config"]["ffcv_storage"]["jpg"] == CLASSES * PER_CLASS
    stages = {}
    for row in record["rows"]:
        stages.setdefault(row["loader"], {})[row["stage"]] = row["ms_per_image"]
    assert list(stages) == list(LOADERS)
    assert list(stages["torchvision"])[:6] == [
        "read file",
        "decode (Pillow)",
        "random-resized crop",
        "flip",
        "normalize",
        "batch (stack)",
    ]
    assert all(stages["torchvision"][name] > 0 for name in list(stages["torchvision"])[:6])  # each timed directly
    assert list(stages["dali"])[:4] == ["read files", "decode the crop (libjpeg-turbo)", "resize", "flip and normalize"]
    for loader in LOADERS:  # every loader's stages add up to a positive whole
        assert sum(stages[loader].values()) > 0


def test_an_ffcv_epoch_left_early_stops_its_thread(dataset):
    loader = make_loader("ffcv", source(dataset, "ffcv"), batch_size=2, size=SIZE, train=False, workers=1)
    for _ in loader:
        break  # one batch of twelve; FFCV's thread would go on preparing the next ones
    assert not [thread for thread in threading.enumerate() if type(thread).__name__ == "EpochIterator"]
    assert sum(len(labels) for _, labels in loader) == CLASSES * PER_CLASS  # and the next epoch runs whole
