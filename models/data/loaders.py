"""Three image loaders with one contract: torchvision (the baseline), FFCV and NVIDIA DALI.

``make_loader(kind, path, ...)`` returns a ``Loader``: iterating it yields
``(images, labels)`` per batch, ``images`` a float32 ``(N, 3, size, size)`` tensor on
``device`` in channels_last memory format, normalized with the ImageNet mean and
standard deviation, ``labels`` an int64 ``(N,)`` tensor on ``device``. ``len(loader)``
is the number of batches per epoch, ``loader.samples`` the number of images this
process sees per epoch, ``loader.classes`` the number of classes (labels
``0..classes-1``), and ``loader.set_epoch(epoch)`` reshuffles for that epoch.

Training batches: a random crop of 8%–100% of the area (``min_scale``) with aspect
ratio 3/4–4/3, resized to ``size``, flipped horizontally with probability 1/2; full
batches only; ``augment=False`` gives them the evaluation crop instead (still shuffled).
Evaluation batches: the centre ``size / 0.875`` crop resized to ``size``
(for 224: the centre 256 of the shorter side), in dataset order, the last batch partial.

Each loader normalizes where its own pipeline does the work, as its reference users do,
so that the training process receives finished batches: DALI with
``crop_mirror_normalize`` inside the pipeline (float HWC, i.e. NCHW channels_last,
resized without antialiasing as in NVIDIA's DeepLearningExamples); FFCV with
``NormalizeImage`` in its compiled CPU pipeline (on a GPU: uint8 to the device, normalized
there); torchvision in its DataLoader workers on the CPU (on a GPU: uint8 to the device,
normalized there). DALI builds its pipeline once per loader and resets it each epoch;
an epoch left unfinished is drained before the next one starts. FFCV on the CPU yields
views of its own reused buffers (as FFCV does): a batch is overwritten a few batches
later, so use or copy each batch before taking the next.

Sharding across ``world_size`` processes (DDP): training images are shuffled once
per epoch with a seed shared by all loaders and ranks (so the three loaders deliver the
same labels in the same order), and rank r takes every ``world_size``-th image from r;
evaluation images are split without padding or repetition, so the ranks together see
the validation set exactly once.

``path``: an image folder (``ROOT/<class>/<image>``) for torchvision and DALI; a
``.beton`` file written by ``menagerie.models.data.convert.to_ffcv`` for FFCV.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from menagerie.models.data.folders import DataError, ImageFolder, open_rgb, scan_imagefolder

LOADERS = ("torchvision", "ffcv", "dali")
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
CENTRE_FRACTION = 0.875
ASPECT = (3 / 4, 4 / 3)


@functools.cache
def _statistics(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ImageNet mean and standard deviation as ``(1, 3, 1, 1)`` tensors on ``device``, made once."""
    return (torch.tensor(MEAN, device=device).view(1, 3, 1, 1), torch.tensor(STD, device=device).view(1, 3, 1, 1))


def normalize(pixels: torch.Tensor, device: torch.device, channels_last_input: bool) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` (``channels_last_input``) or ``(N, 3, H, W)`` pixels to normalized float32 NCHW.

    The result is channels_last, on ``device``.

    The GPU path of torchvision and FFCV: one element-wise pass on the device.
    """
    pixels = pixels.to(device, non_blocking=True)
    if channels_last_input:
        pixels = pixels.permute(0, 3, 1, 2)  # an NHWC buffer viewed as NCHW is channels_last already
    mean, std = _statistics(device)
    images = (pixels.float() - mean) / std
    return images.contiguous(memory_format=torch.channels_last)


def as_nchw(hwc_images: torch.Tensor) -> torch.Tensor:
    """A float ``(N, H, W, 3)`` batch viewed as ``(N, 3, H, W)`` channels_last, without a copy."""
    return hwc_images.permute(0, 3, 1, 2)


class NormalizeToHWC:
    """Torchvision transform for the CPU path: a uint8 ``(3, H, W)`` image to normalized float32 ``(H, W, 3)``.

    Runs in the DataLoader workers; the collated ``(N, H, W, 3)`` batch is channels_last NCHW via ``as_nchw``.
    """

    def __init__(self):
        self.mean, self.std = torch.tensor(MEAN), torch.tensor(STD)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        pixels = image.permute(1, 2, 0).to(torch.float32, memory_format=torch.contiguous_format)
        return pixels.sub_(self.mean).div_(self.std)


def cores_available() -> int:
    """CPU cores this process may run on (its affinity mask)."""
    return len(os.sched_getaffinity(0))


class Loader:
    """The common interface; each loader implements ``__iter__`` (decode and augment, then ``normalize``)."""

    def __init__(
        self,
        total: int,
        classes: int,
        batch_size: int,
        size: int,
        min_scale: float,
        train: bool,
        rank: int,
        world_size: int,
        device: torch.device,
    ):
        """Checks the settings against the ``total`` images found and sizes this rank's share of an epoch."""
        _check_common(batch_size, size, min_scale, rank, world_size, total, train)
        self.samples, self._batches_per_epoch = _shard_counts(total, batch_size, train, rank, world_size)
        self.batch_size, self.device, self.classes = batch_size, device, classes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._batches_per_epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


def _shard_counts(total: int, batch_size: int, train: bool, rank: int, world_size: int) -> tuple[int, int]:
    """(images, batches) that one rank sees per epoch."""
    if train:
        per_rank = total // world_size
        batches = per_rank // batch_size
        return batches * batch_size, batches
    per_rank = len(range(rank, total, world_size))
    return per_rank, math.ceil(per_rank / batch_size)


def _check_common(
    batch_size: int, size: int, min_scale: float, rank: int, world_size: int, total: int, train: bool
) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if size < 8:
        raise ValueError(f"image size must be at least 8 pixels, got {size}")
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    if train and total // world_size < batch_size:
        raise DataError(
            f"{total} training images cannot fill one batch of {batch_size} on each of {world_size} process(es)"
        )


def _shared_permutation(seed: int, epoch: int, total: int, rank: int, world_size: int, samples: int) -> list[int]:
    """This rank's part of the epoch's permutation (same on all ranks): every ``world_size``-th index from ``rank``."""
    permutation = torch.randperm(total, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return permutation[rank : samples * world_size : world_size]


# --- torchvision ------------------------------------------------------------------------


class _FolderDataset(torch.utils.data.Dataset):
    def __init__(self, folder: ImageFolder, indices: list[int], transform):
        self.folder, self.indices, self.transform = folder, indices, transform

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        path, label = self.folder.samples[self.indices[index]]
        return self.transform(open_rgb(path)), label


class TorchvisionLoader(Loader):
    """ImageFolder-style decoding with Pillow in DataLoader worker processes, torchvision transforms.

    On the CPU the workers also normalize (``NormalizeToHWC``); on a GPU they send uint8 and the device normalizes.
    """

    def __init__(self, path, batch_size, size, train, augment, device, workers, seed, rank, world_size, min_scale):
        from torchvision.transforms import v2

        folder = scan_imagefolder(path)
        total = len(folder.samples)
        super().__init__(total, len(folder.classes), batch_size, size, min_scale, train, rank, world_size, device)
        if train and augment:
            steps = [
                v2.PILToTensor(),
                v2.RandomResizedCrop(size, scale=(min_scale, 1.0), ratio=ASPECT),
                v2.RandomHorizontalFlip(),
            ]
        else:
            steps = [v2.PILToTensor(), v2.Resize(round(size / CENTRE_FRACTION)), v2.CenterCrop(size)]
        self._normalized_in_workers = device.type != "cuda"
        transform = v2.Compose(steps + [NormalizeToHWC()] if self._normalized_in_workers else steps)
        self.train, self.seed, self.rank, self.world_size, self.total = train, seed, rank, world_size, total
        indices = list(range(total)) if train else list(range(rank, total, world_size))
        self._order = _EpochOrder(list(range(len(indices))))
        # Workers persist across epochs (no respawn per epoch); the sampler, read in this process, changes order.
        self._loader = torch.utils.data.DataLoader(
            _FolderDataset(folder, indices, transform),
            batch_size=batch_size,
            sampler=self._order,
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=train,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed + rank),
        )

    def __iter__(self):
        if self.train:
            self._order.indices = _shared_permutation(
                self.seed, self.epoch, self.total, self.rank, self.world_size, self.samples
            )
        for pixels, labels in self._loader:
            images = as_nchw(pixels) if self._normalized_in_workers else normalize(pixels, self.device, False)
            yield images, labels.to(self.device, non_blocking=True)


class _EpochOrder(torch.utils.data.Sampler):
    """The dataset indices of the current epoch, in order; replaced before each epoch."""

    def __init__(self, indices: list[int]):
        self.indices = indices

    def __len__(self):
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


# --- FFCV ---------------------------------------------------------------------------------


class FFCVLoader(Loader):
    """FFCV's memory-mapped .beton reader.

    JIT-compiled (numba) decode, crop, flip and, on the CPU, normalization in threads.
    """

    def __init__(self, path, batch_size, size, train, augment, device, workers, seed, rank, world_size, min_scale):
        import numpy as np
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
        from ffcv.loader import Loader as FFCVBaseLoader
        from ffcv.loader import OrderOption
        from ffcv.reader import Reader
        from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, ToDevice, ToTensor, ToTorchImage

        path = Path(path)
        if not path.is_file():
            raise DataError(f"FFCV dataset {path} does not exist (write one with `menagerie data to-ffcv`)")
        try:
            reader = Reader(str(path))
        except Exception as error:  # ffcv raises bare errors on anything that is not a .beton
            raise DataError(f"{path} is not a readable FFCV .beton file: {error}") from None
        fields = list(reader.handlers)
        if fields != ["image", "label"]:
            raise DataError(f"{path} holds fields {fields}; expected ['image', 'label'] (`menagerie data to-ffcv`)")
        total = int(reader.num_samples)
        if total == 0:
            raise DataError(f"FFCV dataset {path} holds no images")
        classes = int(reader.metadata["f1"].max()) + 1
        super().__init__(total, classes, batch_size, size, min_scale, train, rank, world_size, device)
        samples = self.samples
        self.seed, self.rank, self.world_size, self.total, self.train = seed, rank, world_size, total, train

        class EpochOrder(FFCVBaseLoader):
            """FFCV's loader walking the shared per-epoch permutation (training) or this rank's slice (evaluation)."""

            def next_traversal_order(inner):
                if not train:
                    return np.arange(rank, total, world_size, dtype=np.uint64)  # FFCV's index type
                return np.array(
                    _shared_permutation(seed, inner.next_epoch, total, rank, world_size, samples), dtype=np.uint64
                )

        if train and augment:
            decoder = RandomResizedCropRGBImageDecoder((size, size), scale=(min_scale, 1.0), ratio=ASPECT)
            image_pipeline = [decoder, RandomHorizontalFlip()]
        else:
            image_pipeline = [CenterCropRGBImageDecoder((size, size), ratio=CENTRE_FRACTION)]
        label_pipeline = [IntDecoder(), ToTensor()]
        self._on_gpu = device.type == "cuda"
        if self._on_gpu:  # FFCV's asynchronous copy from pinned buffers; its GPU NormalizeImage needs cupy
            image_pipeline += [ToTensor(), ToDevice(device, non_blocking=True)]
            label_pipeline.append(ToDevice(device, non_blocking=True))
        else:
            statistics = np.array(MEAN), np.array(STD)
            image_pipeline += [NormalizeImage(*statistics, np.float32), ToTensor(), ToTorchImage(channels_last=True)]
        self._loader = EpochOrder(
            str(path),
            batch_size=batch_size,
            num_workers=max(1, workers),
            order=OrderOption.SEQUENTIAL,
            drop_last=train,
            pipelines={"image": image_pipeline, "label": label_pipeline},
            seed=seed,
            os_cache=True,
        )

    def __iter__(self):
        self._loader.next_epoch = self.epoch
        batches = iter(self._loader)  # FFCV's EpochIterator: a thread that prepares batches ahead
        try:
            for images, labels in batches:
                if self._on_gpu:
                    images = normalize(images, self.device, channels_last_input=True)
                yield images, labels.view(-1).long().to(self.device, non_blocking=True)
        finally:
            _stop_epoch(batches)


def _stop_epoch(batches) -> None:
    """Stop an FFCV epoch's thread before returning, also when the epoch is left early (a `break`, an error).

    FFCV stops it only when the garbage collector finds it, and meanwhile it goes on preparing batches and
    compiling them (numba parses Python source with `ast`). On Python 3.11.7 and older, two threads that parse
    at once can fail with "AST constructor recursion depth mismatch" (CPython gh-106905). CI saw that in the
    next loader a test built. Draining the queue unblocks the thread's last put; it sees the stop and returns.
    """
    from queue import Empty

    batches.terminate_event.set()
    while batches.is_alive():
        try:
            batches.output_queue.get(timeout=0.1)
        except Empty:
            pass
    batches.close()


# --- DALI ---------------------------------------------------------------------------------


class _EpochFiles:
    """DALI's external source: the current epoch's files in order, one batch of (encoded bytes, labels) per call.

    ``start(order)`` sets the order of the next epoch; after its last batch a call raises StopIteration,
    which ends DALI's epoch.
    """

    def __init__(self, folder: ImageFolder, batch_size: int):
        self.folder, self.batch_size, self.order, self.position = folder, batch_size, [], 0

    def start(self, order: list[int]) -> None:
        self.order, self.position = order, 0

    def __call__(self):
        import numpy as np

        chosen = self.order[self.position : self.position + self.batch_size]
        if not chosen:
            raise StopIteration
        self.position += len(chosen)
        samples = [self.folder.samples[index] for index in chosen]
        return (
            [np.fromfile(path, dtype=np.uint8) for path, _ in samples],
            [np.array([label], dtype=np.int32) for _, label in samples],
        )


class DALILoader(Loader):
    """NVIDIA DALI: on a GPU, nvJPEG ("mixed") decoding fused with the random crop; on the CPU, a CPU pipeline.

    The CPU pipeline is built with ``device_id=None``.

    The pipeline (decode, crop, resize without antialiasing, flip and normalize in ``crop_mirror_normalize``,
    float HWC output) is built on the first epoch and reset for each later one; ``workers`` is its thread count.
    """

    def __init__(self, path, batch_size, size, train, augment, device, workers, seed, rank, world_size, min_scale):
        folder = scan_imagefolder(path)
        total = len(folder.samples)
        super().__init__(total, len(folder.classes), batch_size, size, min_scale, train, rank, world_size, device)
        self.folder, self.size, self.train, self.augment, self.workers = folder, size, train, augment, workers
        self.seed, self.rank, self.world_size, self.total, self.min_scale = seed, rank, world_size, total, min_scale
        self._files = _EpochFiles(folder, batch_size)
        self._iterator = None
        self._epoch_unfinished = False

    def _build_pipeline(self):
        """The pipeline over ``self._files``, built (once per loader)."""
        from nvidia.dali import fn, pipeline_def, types

        on_gpu = self.device.type == "cuda"
        mean, std = list(MEAN), list(STD)

        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=max(1, self.workers),
            device_id=(self.device.index or 0) if on_gpu else None,
            seed=self.seed,
            prefetch_queue_depth=2,
            exec_dynamic=True,
        )
        def pipeline():
            jpegs, label = fn.external_source(source=self._files, num_outputs=2, batch=True)
            decoder_device = "mixed" if on_gpu else "cpu"
            if self.train and self.augment:
                images = fn.decoders.image_random_crop(
                    jpegs,
                    device=decoder_device,
                    output_type=types.RGB,
                    random_area=[self.min_scale, 1.0],
                    random_aspect_ratio=ASPECT,
                )
                images = fn.resize(images, resize_x=self.size, resize_y=self.size, antialias=False)
                mirror = fn.random.coin_flip()
            else:
                images = fn.decoders.image(jpegs, device=decoder_device, output_type=types.RGB)
                images = fn.resize(images, resize_shorter=round(self.size / CENTRE_FRACTION), antialias=False)
                mirror = 0
            images = fn.crop_mirror_normalize(
                images,
                dtype=types.FLOAT,
                output_layout="HWC",
                crop=(self.size, self.size),
                mean=mean,
                std=std,
                mirror=mirror,
            )
            return images, label.gpu() if on_gpu else label

        pipe = pipeline()
        pipe.build()
        return pipe

    def _epoch_order(self) -> list[int]:
        """Dataset indices of this epoch: the shared permutation (training) or this rank's slice (evaluation)."""
        if self.train:
            return _shared_permutation(self.seed, self.epoch, self.total, self.rank, self.world_size, self.samples)
        return list(range(self.rank, self.total, self.world_size))

    def _start_epoch(self):
        """The DALI iterator, positioned at the first batch of this epoch (built on the first call, reset after)."""
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if self._epoch_unfinished:  # DALI cannot reset mid-epoch: finish the abandoned one
            for _ in self._iterator:
                pass
        self._files.start(self._epoch_order())
        if self._iterator is None:
            policy = LastBatchPolicy.DROP if self.train else LastBatchPolicy.PARTIAL
            self._iterator = DALIGenericIterator(self._build_pipeline(), ["images", "labels"], last_batch_policy=policy)
        else:
            self._iterator.reset()
        return self._iterator

    def __iter__(self):
        try:
            iterator = self._start_epoch()
            self._epoch_unfinished = True
            for (batch,) in iterator:
                yield as_nchw(batch["images"]), batch["labels"].view(-1).long().to(self.device, non_blocking=True)
            self._epoch_unfinished = False
        except RuntimeError as error:
            if "decod" in str(error).lower() or "image" in str(error).lower():
                raise DataError(
                    f"DALI cannot decode an image under {self.folder.root}: {str(error).splitlines()[0]}"
                ) from None
            raise


LOADER_CLASSES = {"torchvision": TorchvisionLoader, "ffcv": FFCVLoader, "dali": DALILoader}


def make_loader(
    kind: str,
    path: str | Path,
    *,
    batch_size: int,
    size: int,
    train: bool,
    augment: bool = True,
    device: torch.device | str = "cpu",
    workers: int = 2,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    min_scale: float = 0.08,
) -> Loader:
    """The ``kind`` loader over ``path``; ValueError for an unknown kind, DataError for an unusable dataset."""
    if kind not in LOADER_CLASSES:
        raise ValueError(f"unknown loader {kind!r}; expected one of {', '.join(LOADERS)}")
    return LOADER_CLASSES[kind](
        path, batch_size, size, train, augment, torch.device(device), workers, seed, rank, world_size, min_scale
    )
