"""Activation datasets from any PyTorch model: hook a named submodule, run inputs, write shards.

``collect_activations(model, layer, batches, out)`` registers a forward hook on
``model.get_submodule(layer)``, runs the model on each batch (a tensor, a tuple of
tensors, or a dict of keyword tensors such as a tokenizer's output) and keeps the
hooked output (the first element when it is a tuple) as rows of its last dimension.
When a batch carries an ``attention_mask``, padding positions are dropped.

On disk: ``shard_00000.npy``, ... (``(rows, d)`` arrays, memory-mappable) and
``manifest.json`` (model, layer, dtype, shape, count, shards). Shards are written under
temporary names and renamed when full; the manifest is written last, atomically, so a
dataset whose writing was interrupted has no manifest and ``ActivationDataset``
refuses it. ``ActivationDataset.batches`` streams shuffled rows: each epoch visits the
shards in a random order and each shard's rows in a random order.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from menagerie.harness.results import write_bytes_atomically, write_json_atomically

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
NUMPY_DTYPES = {torch.float32: "float32", torch.float16: "float16"}


class ActivationDatasetError(ValueError):
    """A dataset folder that is missing, incomplete or inconsistent."""


@dataclass
class Manifest:
    model: str
    layer: str
    dtype: str
    dim: int
    count: int
    shards: list[dict]  # {"file": name, "rows": n}
    format_version: int = FORMAT_VERSION


def resolve_layer(model: torch.nn.Module, layer: str) -> torch.nn.Module:
    names = [name for name, _ in model.named_modules() if name]
    if layer not in names:
        close = [name for name in names if layer.split(".")[-1] in name][:8] or names[:8]
        raise ValueError(
            f"layer {layer!r} is not a submodule of {type(model).__name__}; some that are: {', '.join(close)}"
        )
    return model.get_submodule(layer)


class _ShardWriter:
    """Buffers rows and writes fixed-size shards; nothing is final until ``finish``."""

    def __init__(self, out: Path, dim: int, dtype: torch.dtype, shard_rows: int):
        self.out, self.dim, self.dtype, self.shard_rows = out, dim, dtype, shard_rows
        self.pending: list[torch.Tensor] = []
        self.pending_rows = 0
        self.shards: list[dict] = []

    def add(self, rows: torch.Tensor) -> None:
        if rows.shape[1] != self.dim:
            raise ValueError(f"layer output width changed from {self.dim} to {rows.shape[1]}")
        self.pending.append(rows.detach().to("cpu", self.dtype))
        self.pending_rows += rows.shape[0]
        while self.pending_rows >= self.shard_rows:
            self._write(self.shard_rows)

    def _write(self, count: int) -> None:
        rows = torch.cat(self.pending)
        shard, rest = rows[:count], rows[count:]
        self.pending, self.pending_rows = ([rest] if len(rest) else []), len(rest)
        name = f"shard_{len(self.shards):05d}.npy"
        array = io.BytesIO()
        np.save(array, shard.numpy())
        write_bytes_atomically(array.getvalue(), self.out / name)
        self.shards.append({"file": name, "rows": count})

    def finish(self) -> list[dict]:
        if self.pending_rows:
            self._write(self.pending_rows)
        return self.shards


def _rows_of(output, batch) -> torch.Tensor:
    hidden = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(hidden, torch.Tensor):
        raise TypeError(f"the hooked layer returned {type(hidden).__name__}, not a tensor")
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    if mask is not None and hidden.dim() == 3 and hidden.shape[:2] == mask.shape:
        return hidden[mask.bool()]
    return hidden.reshape(-1, hidden.shape[-1])


def _call(model, batch, device):
    if isinstance(batch, dict):
        return model(**{name: value.to(device) for name, value in batch.items()})
    if isinstance(batch, (tuple, list)):
        return model(*(value.to(device) for value in batch))
    return model(batch.to(device))


def collect_activations(
    model: torch.nn.Module,
    layer: str,
    batches: Iterable,
    out: Path | str,
    *,
    model_name: str,
    dtype: torch.dtype = torch.float32,
    shard_rows: int = 65536,
    max_rows: int | None = None,
    on_batch=None,
) -> Manifest:
    """Runs ``model`` over ``batches`` and writes the ``layer`` outputs to ``out`` (see the module doc).

    ``on_batch(rows_so_far)`` is called after each batch (progress); ``max_rows`` stops early.
    """
    if dtype not in NUMPY_DTYPES:
        raise ValueError(f"dtype: expected one of {[str(d) for d in NUMPY_DTYPES]}, got {dtype}")
    if shard_rows < 1:
        raise ValueError(f"shard_rows: expected a positive count, got {shard_rows}")
    out = Path(out)
    if (out / MANIFEST).exists():
        raise FileExistsError(f"{out} already holds an activation dataset; choose another folder")
    hooked = resolve_layer(model, layer)
    out.mkdir(parents=True, exist_ok=True)
    captured: list[torch.Tensor] = []
    handle = hooked.register_forward_hook(lambda module, args, output: captured.append(output))
    device = next(model.parameters(), torch.empty(0)).device  # a model without parameters runs on the CPU
    writer, total = None, 0
    try:
        with torch.no_grad():
            for batch in batches:
                captured.clear()
                _call(model, batch, device)
                if not captured:
                    raise RuntimeError(f"layer {layer!r} did not run in the model's forward")
                rows = _rows_of(captured[0], batch)
                if max_rows is not None:
                    rows = rows[: max_rows - total]
                writer = writer or _ShardWriter(out, rows.shape[1], dtype, shard_rows)
                writer.add(rows)
                total += rows.shape[0]
                if on_batch:
                    on_batch(total)
                if max_rows is not None and total >= max_rows:
                    break
    finally:
        handle.remove()
    if writer is None or total == 0:
        raise ValueError("no activations: the inputs were empty")
    manifest = Manifest(
        model=model_name, layer=layer, dtype=NUMPY_DTYPES[dtype], dim=writer.dim, count=total, shards=writer.finish()
    )
    write_json_atomically(asdict(manifest), out / MANIFEST)
    return manifest


class ActivationDataset:
    """A finished activation folder, memory-mapped; ``batches`` streams shuffled ``(B, d)`` tensors."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ActivationDatasetError(f"{self.folder}: no such activation folder")
        path = self.folder / MANIFEST
        if not path.exists():
            raise ActivationDatasetError(
                f"{self.folder}: no {MANIFEST}; the dataset is incomplete "
                "(its writing was interrupted) or this is not an activation folder"
            )
        try:
            self.manifest = Manifest(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise ActivationDatasetError(f"{path}: not a valid manifest ({error})") from None
        self.shards = []
        for shard in self.manifest.shards:
            try:
                array = np.load(self.folder / shard["file"], mmap_mode="r")
            except (OSError, ValueError) as error:
                raise ActivationDatasetError(f"{self.folder / shard['file']}: unreadable shard ({error})") from None
            if array.shape != (shard["rows"], self.manifest.dim):
                raise ActivationDatasetError(
                    f"{shard['file']}: shape {array.shape}, manifest says ({shard['rows']}, {self.manifest.dim})"
                )
            self.shards.append(array)

    @property
    def dim(self) -> int:
        return self.manifest.dim

    def __len__(self) -> int:
        return self.manifest.count

    def batches(self, batch_size: int, seed: int = 0, epochs: int | None = None) -> Iterator[torch.Tensor]:
        """Shuffled float32 batches of ``batch_size`` rows (the last of an epoch may be smaller);
        ``epochs=None`` streams forever."""
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive count, got {batch_size}")
        generator = np.random.default_rng(seed)
        epoch = 0
        while epochs is None or epoch < epochs:
            buffer: list[np.ndarray] = []
            buffered = 0
            for shard_index in generator.permutation(len(self.shards)):
                shard = self.shards[shard_index]
                order = generator.permutation(len(shard))
                for start in range(0, len(shard), batch_size):
                    rows = np.sort(order[start : start + batch_size])  # sorted: sequential memory-map reads
                    buffer.append(np.asarray(shard[rows]))
                    buffered += len(rows)
                    while buffered >= batch_size:
                        joined = np.concatenate(buffer)
                        yield torch.from_numpy(joined[:batch_size].astype(np.float32))
                        buffer, buffered = [joined[batch_size:]], len(joined) - batch_size
            if buffered:
                yield torch.from_numpy(np.concatenate(buffer).astype(np.float32))
            epoch += 1
