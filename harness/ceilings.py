"""Device ceilings for the roofline: copy bandwidth, matmul rate, FP32 and exp rates.

Both are measured once per (device, torch version) and cached in
``$MENAGERIE_CACHE_DIR/ceilings.json`` (default ``~/.cache/menagerie``), because a
datasheet peak is rarely reachable and a roofline against it flatters nobody. If a
measurement fails, the datasheet value is used when the device is known, and the
record says ``source: datasheet`` so nobody mistakes it for a measurement.

Copy bandwidth counts the bytes read plus the bytes written by ``dst.copy_(src)``;
the matmul rate is ``2 n^3`` FLOPs of a square ``torch.matmul`` in the given
dtype. Both use the median of the suite's own timer.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from menagerie.harness.device import device_name
from menagerie.harness.registry import dtype_name
from menagerie.harness.results import write_text_atomically
from menagerie.harness.timing import Budget, measure

# Dense (no sparsity) peaks from NVIDIA's datasheets, by a substring of the device
# name; the first match wins. The exp rate is derived, not printed: SMs x 16
# special-function results per clock x boost clock.
DATASHEET = [
    (
        "H200",
        dict(
            copy_gbps=4800.0,
            fp32_tflops=66.9,
            exp_tops=3.9,
            matmul_tflops={"bfloat16": 989.4, "float16": 989.4, "float32": 66.9},
        ),
    ),
    (
        "H100 PCIe",
        dict(
            copy_gbps=2000.0,
            fp32_tflops=51.2,
            exp_tops=3.2,
            matmul_tflops={"bfloat16": 756.0, "float16": 756.0, "float32": 51.2},
        ),
    ),
    (
        "H100",
        dict(
            copy_gbps=3350.0,
            fp32_tflops=66.9,
            exp_tops=3.9,
            matmul_tflops={"bfloat16": 989.4, "float16": 989.4, "float32": 66.9},
        ),
    ),
    (
        "A100-SXM4-80GB",
        dict(
            copy_gbps=2039.0,
            fp32_tflops=19.5,
            exp_tops=2.4,
            matmul_tflops={"bfloat16": 312.0, "float16": 312.0, "float32": 19.5},
        ),
    ),
    (
        "A100",
        dict(
            copy_gbps=1555.0,
            fp32_tflops=19.5,
            exp_tops=2.4,
            matmul_tflops={"bfloat16": 312.0, "float16": 312.0, "float32": 19.5},
        ),
    ),
]
UNITS = {"copy_gbps": "GB/s", "matmul_tflops": "TFLOP/s", "fp32_tflops": "TFLOP/s", "exp_tops": "T exp/s"}


class NotMeasurable(RuntimeError):
    """This ceiling has no meaningful measurement on this device (e.g. FP32 rate on the CPU)."""


@dataclass(frozen=True)
class Ceiling:
    value: float
    unit: str
    source: str  # "measured" or "datasheet"
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def cache_path() -> Path:
    root = os.environ.get("MENAGERIE_CACHE_DIR") or Path.home() / ".cache" / "menagerie"
    return Path(root) / "ceilings.json"


def _measure_copy(device: torch.device) -> Ceiling:
    nbytes = (512 if device.type == "cuda" else 128) * 1024 * 1024
    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    samples = measure(
        lambda: dst.copy_(src),
        Budget(warmup_s=0.2, measure_s=1.0, min_reps=10),
        device,
        "events" if device.type == "cuda" else "cpu",
    )
    median = sorted(samples)[len(samples) // 2]
    return Ceiling(
        2 * nbytes / median / 1e9,
        "GB/s",
        "measured",
        f"median of {len(samples)} copies of {nbytes >> 20} MiB, read + write bytes, "
        f"measured {datetime.date.today().isoformat()}",
    )


def _measure_matmul(device: torch.device, dtype: torch.dtype) -> Ceiling:
    if device.type == "cuda":
        n = 4096 if dtype == torch.float32 else 8192
    else:
        n = 1024 if dtype == torch.float32 else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    samples = measure(
        lambda: torch.matmul(a, b),
        Budget(warmup_s=0.3, measure_s=1.0, min_reps=5),
        device,
        "events" if device.type == "cuda" else "cpu",
    )
    median = sorted(samples)[len(samples) // 2]
    return Ceiling(
        2 * n**3 / median / 1e12,
        "TFLOP/s",
        "measured",
        f"median of {len(samples)} {n}x{n}x{n} {dtype_name(dtype)} matmuls, "
        f"measured {datetime.date.today().isoformat()}",
    )


def _measure_microkernel(device: torch.device, label: str) -> Ceiling:
    """FP32 FMA or exp throughput from a register-resident Triton microkernel (GPU only)."""
    if device.type != "cuda":
        raise NotMeasurable(f"{label} is measured on CUDA devices only")
    import triton

    from menagerie.harness import microkernels

    kernel, per_step, unit_scale = {
        "fp32_tflops": (microkernels.fma_chain_kernel, 2, 1e12),
        "exp_tops": (microkernels.exp_chain_kernel, 1, 1e12),
    }[label]
    block, iterations = 1024, 512
    numel = 256 * block * torch.cuda.get_device_properties(device).multi_processor_count
    x = torch.rand(numel, device=device)
    out = torch.empty_like(x)
    launch = lambda: kernel[(triton.cdiv(numel, block),)](x, out, ITERATIONS=iterations, BLOCK=block)  # noqa: E731
    samples = measure(launch, Budget(warmup_s=0.2, measure_s=0.5, min_reps=5), device, "events")
    median = sorted(samples)[len(samples) // 2]
    operations = per_step * iterations * microkernels.CHAINS * numel
    return Ceiling(
        operations / median / unit_scale,
        UNITS[label],
        "measured",
        f"median of {len(samples)} register-resident Triton chains, measured {datetime.date.today().isoformat()}",
    )


def _datasheet(name: str, dtype: torch.dtype) -> dict[str, Ceiling]:
    for pattern, peaks in DATASHEET:
        if pattern in name:
            values = {**peaks, "matmul_tflops": peaks["matmul_tflops"].get(dtype_name(dtype))}
            return {
                label: Ceiling(value, UNITS[label], "datasheet", f"{pattern} datasheet peak")
                for label, value in values.items()
                if value is not None
            }
    return {}


def _load_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _store_cache(cache: dict) -> None:
    write_text_atomically(json.dumps(cache, indent=2, sort_keys=True), cache_path())


def get_ceilings(device: torch.device, dtype: torch.dtype, remeasure: bool = False) -> dict[str, Ceiling]:
    """Copy bandwidth, matmul rate in ``dtype``, and on a GPU the FP32 and exp rates; cached.

    On the CPU only the copy bandwidth and the matmul rate are measured: interpreted
    Triton has no meaningful FP32 or exp rate.
    """
    name = device_name(device)
    key = f"{name} | torch {torch.__version__}"
    cache = _load_cache()
    entry = cache.setdefault(key, {})
    wanted = {
        "copy_gbps": ("copy_gbps", lambda: _measure_copy(device)),
        "matmul_tflops": (f"matmul_tflops/{dtype_name(dtype)}", lambda: _measure_matmul(device, dtype)),
        "fp32_tflops": ("fp32_tflops", lambda: _measure_microkernel(device, "fp32_tflops")),
        "exp_tops": ("exp_tops", lambda: _measure_microkernel(device, "exp_tops")),
    }
    result, changed = {}, False
    for label, (slot, measure_it) in wanted.items():
        if slot in entry and not remeasure:
            result[label] = Ceiling(**entry[slot])
            continue
        try:
            ceiling = measure_it()
        except NotMeasurable:
            continue
        except (RuntimeError, torch.cuda.OutOfMemoryError):
            ceiling = _datasheet(name, dtype).get(label)
        if ceiling is not None:
            result[label] = ceiling
            if ceiling.source == "measured":
                entry[slot] = ceiling.to_dict()
                changed = True
    if changed:
        _store_cache(cache)
    return result


def roofline(
    flops: float, nbytes: float, exp: float, ceilings: dict[str, Ceiling], flop_ceiling: str = "matmul"
) -> float | None:
    """The shortest time, in seconds, that the work allows on these ceilings.

    The largest of FLOPs over the matmul (or FP32) rate, bytes over the copy
    bandwidth and exponentials over the special-function rate, among the ceilings
    known for the device.
    """
    rate_for_flops = {"matmul": "matmul_tflops", "fp32": "fp32_tflops"}[flop_ceiling]
    floors = []
    if flops and rate_for_flops in ceilings:
        floors.append(flops / (ceilings[rate_for_flops].value * 1e12))
    if nbytes and "copy_gbps" in ceilings:
        floors.append(nbytes / (ceilings["copy_gbps"].value * 1e9))
    if exp and "exp_tops" in ceilings:
        floors.append(exp / (ceilings["exp_tops"].value * 1e12))
    return max(floors) if floors else None
