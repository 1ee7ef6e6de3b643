"""Where each loader's time goes, stage by stage, on one core.

``menagerie data stages ROOT`` measures, for the training augmentation at one output
size, the milliseconds per image of each stage of each loader running on one thread
(one worker), so that the stages' costs add up to the loader's and do not depend on
how many cores are free:

- **torchvision** runs its stages one at a time in this process and times each over
  the same images: read the file, decode it (Pillow, to RGB, as a uint8 tensor), the
  random-resized crop (torchvision, antialiased), the flip, normalization to float,
  and batching (``torch.stack``). The ``DataLoader`` row is what the real loader
  (``workers=0``) costs beyond the sum: sampling, fetching and collating.
- **FFCV** and **DALI** fuse their stages in compiled pipelines, so a stage's cost is
  the difference between two pipelines that stop before and after it (each timed over
  whole batches after a warm-up): FFCV decodes, crops and resizes in one compiled
  decoder, then flips and normalizes; DALI reads the files, decodes only the crop
  (libjpeg-turbo's region decoding), resizes and normalizes with the flip. The last
  row of each is the real loader (``make_loader``, one worker) minus its whole
  pipeline: the delivery of batches to PyTorch. A difference is a measurement of two
  runs and may come out slightly negative for a stage that costs almost nothing.

Each measurement warms up past the deepest prefetch queue (FFCV 3 batches, DALI 2), and
is repeated ``rounds`` times, the rounds taking turns over the loader's pipelines (each
built afresh and alone while it runs); each figure is the fastest round, the cost with
the least interference from other work on the machine.

The FFCV rows decode what the ``.beton`` holds (``beton_storage``): raw images are not
decoded at all.
"""

from __future__ import annotations

import functools
import io
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from menagerie.models.data.folders import scan_imagefolder
from menagerie.models.data.loader_throughput import dataset_path, timed_window
from menagerie.models.data.loaders import ASPECT, MEAN, STD, NormalizeToHWC, make_loader


@dataclass(frozen=True)
class Stage:
    loader: str
    stage: str
    ms_per_image: float

    def to_dict(self) -> dict:
        return asdict(self)


def _differences(loader: str, cumulative: list[tuple[str, float]]) -> list[Stage]:
    """Stages from cumulative (name, ms per image) pairs, each pipeline a prefix of the next."""
    stages, before = [], 0.0
    for name, total in cumulative:
        stages.append(Stage(loader, name, total - before))
        before = total
    return stages


WARMUP_BATCHES = 4  # deeper than every loader's prefetch queue


def torchvision_stages(
    root: Path, size: int, batch_size: int, images: int, rounds: int, min_scale: float = 0.08
) -> list[Stage]:
    """Each torchvision stage timed on its own over ``images`` training images (cycled when fewer)."""
    from PIL import Image
    from torchvision.transforms import v2

    paths = [path for path, _ in scan_imagefolder(dataset_path(root, "torchvision")).samples]
    paths = list(itertools.islice(itertools.cycle(paths), images))
    steps = {
        "read file": lambda path: path.read_bytes(),
        "decode (Pillow)": lambda data: v2.functional.pil_to_tensor(Image.open(io.BytesIO(data)).convert("RGB")),
        "random-resized crop": v2.RandomResizedCrop(size, scale=(min_scale, 1.0), ratio=ASPECT),
        "flip": v2.RandomHorizontalFlip(),
        "normalize": NormalizeToHWC(),
    }
    loader = make_loader(
        "torchvision", dataset_path(root, "torchvision"), batch_size=batch_size, size=size, train=True, workers=0
    )
    fastest = {}
    for _ in range(rounds):
        seconds = dict.fromkeys(steps, 0.0)
        finished = []
        for path in paths:
            value = path
            for name, step in steps.items():
                start = time.perf_counter()
                value = step(value)
                seconds[name] += time.perf_counter() - start
            finished.append(value)
        start = time.perf_counter()
        for first in range(0, len(finished), batch_size):
            torch.stack(finished[first : first + batch_size])
        seconds["batch (stack)"] = time.perf_counter() - start
        seconds["whole loader"] = _loader_ms_per_image(loader, batch_size, images) * images / 1e3
        fastest = {name: min(total, fastest.get(name, total)) for name, total in seconds.items()}
    whole = 1e3 * fastest.pop("whole loader") / images
    stages = [Stage("torchvision", name, 1e3 * total / images) for name, total in fastest.items()]
    return stages + [
        Stage(
            "torchvision",
            "DataLoader (sampling, fetching, collating)",
            whole - sum(stage.ms_per_image for stage in stages),
        )
    ]


def _loader_ms_per_image(loader, batch_size: int, images: int) -> float:
    batches = max(1, images // batch_size)
    return 1e3 * timed_window(loader, WARMUP_BATCHES, batches) / (batches * batch_size)


def _fastest_cuts(loader: str, cuts: list[tuple[str, Callable[[], float]]], rounds: int) -> list[Stage]:
    """Stages from cumulative measurements (each a prefix of the next), each the fastest of ``rounds`` turns."""
    fastest = {}
    for _ in range(rounds):
        for name, measure in cuts:
            milliseconds = measure()
            fastest[name] = min(milliseconds, fastest.get(name, milliseconds))
    return _differences(loader, list(fastest.items()))


def _timed_batches(next_batch: Callable[[], object], batch_size: int, images: int) -> float:
    """Milliseconds per image over ``images // batch_size`` calls of ``next_batch`` after the warm-up calls."""
    batches = max(1, images // batch_size)
    for _ in range(WARMUP_BATCHES):
        next_batch()
    start = time.perf_counter()
    for _ in range(batches):
        next_batch()
    return 1e3 * (time.perf_counter() - start) / (batches * batch_size)


def ffcv_stages(
    root: Path, size: int, batch_size: int, images: int, rounds: int, min_scale: float = 0.08
) -> list[Stage]:
    """FFCV's pipeline cut after each stage, one worker; the last row is the real loader beyond the pipeline."""
    import numpy as np
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader as FFCVBaseLoader
    from ffcv.loader import OrderOption
    from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, ToTensor, ToTorchImage

    path = dataset_path(root, "ffcv")
    full = [
        RandomResizedCropRGBImageDecoder((size, size), scale=(min_scale, 1.0), ratio=ASPECT),
        RandomHorizontalFlip(),
        NormalizeImage(np.array(MEAN), np.array(STD), np.float32),
        ToTensor(),
        ToTorchImage(channels_last=True),
    ]

    def cut_after(length: int) -> float:
        # The real loader's settings (page-cache reads, sequential over its own permutation)
        loader = FFCVBaseLoader(
            str(path),
            batch_size=batch_size,
            num_workers=1,
            os_cache=True,
            order=OrderOption.SEQUENTIAL,
            drop_last=True,
            pipelines={"image": full[:length], "label": [IntDecoder()]},
        )
        return _timed_epochs(loader, batch_size, images)

    cuts = [
        (name, functools.partial(cut_after, length))
        for name, length in [
            ("decode, crop, resize (one compiled decoder)", 1),
            ("flip", 2),
            ("normalize, to torch", 5),
        ]
    ]
    cuts.append(
        (
            "delivery (labels, epochs)",
            lambda: _loader_ms_per_image(
                make_loader("ffcv", path, batch_size=batch_size, size=size, train=True, workers=1), batch_size, images
            ),
        )
    )
    return _fastest_cuts("ffcv", cuts, rounds)


def _timed_epochs(epochs, batch_size: int, images: int) -> float:
    """Milliseconds per image over ``images // batch_size`` batches of ``epochs`` (iterated again at each end) after
    the warm-up batches; the epoch in progress is then finished untimed."""
    batches = max(1, images // batch_size)
    taken, start, elapsed = 0, 0.0, 0.0
    while taken < WARMUP_BATCHES + batches:
        for _ in epochs:
            taken += 1
            if taken == WARMUP_BATCHES:
                start = time.perf_counter()
            elif taken == WARMUP_BATCHES + batches:
                elapsed = time.perf_counter() - start
    return 1e3 * elapsed / (batches * batch_size)


def dali_stages(
    root: Path, size: int, batch_size: int, images: int, rounds: int, min_scale: float = 0.08
) -> list[Stage]:
    """DALI's CPU pipeline cut after each stage, one thread; the last row is the real loader beyond the pipeline."""
    import numpy as np
    from nvidia.dali import fn, pipeline_def, types

    folder = dataset_path(root, "dali")
    files = itertools.cycle([path for path, _ in scan_imagefolder(folder).samples])

    def read_batch():
        return [np.fromfile(next(files), dtype=np.uint8) for _ in range(batch_size)]

    def cut_after(stage: int):
        @pipeline_def(
            batch_size=batch_size, num_threads=1, device_id=None, seed=0, prefetch_queue_depth=2, exec_dynamic=True
        )
        def pipeline():
            data = fn.external_source(source=read_batch, batch=True)
            if stage >= 1:
                data = fn.decoders.image_random_crop(
                    data, device="cpu", output_type=types.RGB, random_area=[min_scale, 1.0], random_aspect_ratio=ASPECT
                )
            if stage >= 2:
                data = fn.resize(data, resize_x=size, resize_y=size, antialias=False)
            if stage >= 3:
                data = fn.crop_mirror_normalize(
                    data,
                    dtype=types.FLOAT,
                    output_layout="HWC",
                    crop=(size, size),
                    mean=list(MEAN),
                    std=list(STD),
                    mirror=fn.random.coin_flip(),
                )
            return data

        built = pipeline()
        built.build()
        return built

    names = ["read files", "decode the crop (libjpeg-turbo)", "resize", "flip and normalize"]
    cuts = [
        (name, lambda stage=stage: _timed_batches(cut_after(stage).run, batch_size, images))
        for stage, name in enumerate(names)
    ]
    cuts.append(
        (
            "delivery to PyTorch (DALIGenericIterator)",
            lambda: _loader_ms_per_image(
                make_loader("dali", folder, batch_size=batch_size, size=size, train=True, workers=1), batch_size, images
            ),
        )
    )
    return _fastest_cuts("dali", cuts, rounds)


STAGE_PROFILERS = {"torchvision": torchvision_stages, "ffcv": ffcv_stages, "dali": dali_stages}


def profile(
    root: str | Path,
    loaders,
    size: int = 224,
    batch_size: int = 64,
    images: int = 512,
    rounds: int = 3,
    on_loader: Callable[[str], None] | None = None,
) -> list[Stage]:
    """Every stage of each of ``loaders`` at output ``size``; ``images`` images a measurement, fastest of ``rounds``."""
    stages, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # torchvision's stages run in this process: one core, like one worker
    try:
        for loader in loaders:
            if on_loader:
                on_loader(loader)
            stages += STAGE_PROFILERS[loader](Path(root), size, batch_size, images, rounds)
    finally:
        torch.set_num_threads(threads)
    return stages
