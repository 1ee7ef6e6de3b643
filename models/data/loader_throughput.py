"""Images per second of the torchvision, FFCV and DALI loaders.

Not a harness benchmark: the harness times a pure function of random tensors and
checks it against a float64 reference, while a loader reads files, its output is
random by design (crops, flips) and decoders differ in the last bit. So this module
registers nothing; ``menagerie data throughput`` calls ``measure`` and writes a
record with the harness's provenance.

Every loader reads the same images (``ROOT/train`` as JPEG files, ``ROOT/train.beton``
for FFCV) with the same worker count (processes for torchvision, threads for FFCV and
DALI) on the same cores, applies the training augmentation (random-resized crop and flip)
at each requested size, and delivers normalized float batches to the device. Batches
run back to back across epoch boundaries: ``warmup_batches`` untimed (file cache, numba
compilation, DALI's pipeline build, and filling every prefetch queue, so they must exceed
the deepest queue: torchvision 2 × workers, FFCV 3, DALI 2), then the clock runs over
the next ``batches`` batches, synchronizing the device at the end; the epoch in progress
is then finished untimed.

A shared machine's load drifts while the loaders run one after another, so the
measurement is repeated in ``rounds`` that each time every (loader, size) once, in
turn: a row reports the median of its rounds (and their range), and the ratio to
torchvision is the ratio of medians. The FFCV row names how its ``.beton`` stores the
images (JPEG or raw, ``menagerie.models.data.convert.beton_storage``): raw images skip decoding.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from menagerie.models.data import convert
from menagerie.models.data.loaders import LOADERS, Loader, cores_available, make_loader

BASELINE = "torchvision"


@dataclass(frozen=True)
class LoaderThroughput:
    loader: str
    size: int
    batch_size: int
    workers: int
    cores: int
    warmup_batches: int
    batches: int
    rounds_images_per_s: list[float]
    images_per_s: float  # median of the rounds
    storage: dict[str, int] | None  # FFCV: images stored as JPEG and raw

    def to_dict(self) -> dict:
        return asdict(self)


class BatchStream:
    """A loader's batches back to back over epochs 0, 1, 2, …; ``finish_epoch`` drains the epoch in progress."""

    def __init__(self, loader: Loader):
        self.loader, self.next_epoch = loader, 0
        self._epoch: Iterator | None = None

    def take(self, count: int) -> None:
        """Consumes ``count`` batches, starting new epochs as needed."""
        taken = 0
        while taken < count:
            if self._epoch is not None and next(self._epoch, None) is not None:
                taken += 1
            else:
                self._start_epoch()

    def finish_epoch(self) -> None:
        for _ in self._epoch or ():
            pass

    def _start_epoch(self) -> None:
        self.loader.set_epoch(self.next_epoch)
        self.next_epoch += 1
        self._epoch = iter(self.loader)


def timed_window(
    loader: Loader,
    warmup_batches: int,
    batches: int,
    clock: Callable[[], float] = time.perf_counter,
    synchronize: Callable[[], None] = lambda: None,
) -> float:
    """Seconds that ``batches`` batches take after ``warmup_batches`` untimed ones (``synchronize`` before stopping)."""
    stream = BatchStream(loader)
    stream.take(warmup_batches)
    start = clock()
    stream.take(batches)
    synchronize()
    seconds = clock() - start
    stream.finish_epoch()
    return seconds


def dataset_path(root: Path, loader: str) -> Path:
    """The training split of ``root`` in the loader's format."""
    return root / "train.beton" if loader == "ffcv" else root / "train"


def measure(
    root: str | Path,
    loaders=LOADERS,
    sizes=(224, 32),
    batch_size: int = 256,
    workers: int = 4,
    batches: int = 50,
    warmup_batches: int = 10,
    device: torch.device | str = "cpu",
    rounds: int = 3,
    on_result: Callable[[str, int, int, float], None] | None = None,
) -> list[LoaderThroughput]:
    """Measures each (loader, size) once per round: ``batches`` timed batches after ``warmup_batches``.

    ``on_result(loader, size, round, images_per_s)`` is called after each measurement.
    """
    root, device = Path(root), torch.device(device)
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    pairs = [(loader_name, size) for loader_name in loaders for size in sizes]
    rates = {pair: [] for pair in pairs}
    for round_index in range(rounds):
        for loader_name, size in pairs:
            loader = make_loader(
                loader_name,
                dataset_path(root, loader_name),
                batch_size=batch_size,
                size=size,
                train=True,
                device=device,
                workers=workers,
            )
            seconds = timed_window(loader, warmup_batches, batches, synchronize=synchronize)
            rates[loader_name, size].append(batches * batch_size / seconds)
            if on_result:
                on_result(loader_name, size, round_index, rates[loader_name, size][-1])
    storage = convert.beton_storage(dataset_path(root, "ffcv")) if "ffcv" in loaders else None
    return [
        LoaderThroughput(
            loader_name,
            size,
            batch_size,
            workers,
            cores_available(),
            warmup_batches,
            batches,
            rates[loader_name, size],
            statistics.median(rates[loader_name, size]),
            storage if loader_name == "ffcv" else None,
        )
        for loader_name, size in pairs
    ]


def speedups(results: list[LoaderThroughput]) -> dict[tuple[str, int], float]:
    """Each (loader, size)'s images per second over torchvision's at that size (where torchvision was measured)."""
    baseline = {result.size: result.images_per_s for result in results if result.loader == BASELINE}
    return {
        (result.loader, result.size): result.images_per_s / baseline[result.size]
        for result in results
        if result.size in baseline
    }
