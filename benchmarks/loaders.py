"""``loaders.throughput``: images per second of the torchvision, FFCV and DALI loaders.

Not a harness benchmark: the harness times a pure function of random tensors and
checks it against a float64 reference, while a loader reads files, its output is
random by design (crops, flips) and decoders differ in the last bit. So this module
registers nothing; ``menagerie data throughput`` calls ``measure`` and writes a
record with the harness's provenance.

Every loader reads the same images (``ROOT/train`` as JPEG files, ``ROOT/train.beton``
for FFCV) with the same worker count and batch size, applies the training
augmentation (random-resized crop and flip) at each requested size, and delivers
normalized float batches to the device; the clock runs from the first batch of the
second pass (warm pass first: file cache, numba compilation, DALI's pipeline build)
until ``batches`` batches later, synchronizing the device at the end.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from models.data.folders import DataError
from models.data.loaders import LOADERS, make_loader


@dataclass(frozen=True)
class LoaderThroughput:
    loader: str
    size: int
    batch_size: int
    workers: int
    batches: int
    seconds: float
    images_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def dataset_path(root: Path, loader: str) -> Path:
    """The training split of ``root`` in the loader's format."""
    return root / "train.beton" if loader == "ffcv" else root / "train"


def measure(root: str | Path, loaders=LOADERS, sizes=(224, 32), batch_size: int = 256, workers: int = 4,
            batches: int = 50, device: torch.device | str = "cpu",
            on_result: Callable[[LoaderThroughput], None] | None = None) -> list[LoaderThroughput]:
    """Measures each (loader, size) over ``batches`` batches (at most one epoch's batches minus one)."""
    root, device = Path(root), torch.device(device)
    results = []
    for loader_name in loaders:
        for size in sizes:
            loader = make_loader(loader_name, dataset_path(root, loader_name), batch_size=batch_size, size=size,
                                 train=True, device=device, workers=workers)
            count = min(batches, len(loader) - 1)
            if count < 1:
                raise DataError(f"{dataset_path(root, loader_name)} gives {len(loader)} batch(es) of {batch_size} "
                                "per epoch; the measurement needs at least 2")
            for _ in loader:  # warm pass
                pass
            loader.set_epoch(1)
            iterator = iter(loader)
            next(iterator)  # the clock starts once the pipeline is running
            start = time.perf_counter()
            for _ in zip(range(count), iterator):
                pass
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            for _ in iterator:  # finish the epoch untimed, so that no loader is left mid-epoch
                pass
            result = LoaderThroughput(loader_name, size, batch_size, workers, count, seconds, count * batch_size / seconds)
            results.append(result)
            if on_result:
                on_result(result)
    return results
