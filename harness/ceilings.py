"""Device ceilings for the roofline: copy bandwidth and matmul rate.

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

from harness.device import device_name
from harness.timing import Budget, measure

# Dense (no sparsity) peaks from NVIDIA's datasheets: (substring of the device name,
# copy GB/s, {dtype: matmul TFLOP/s}). Order matters: the first match wins.
DATASHEET = [
    ("H200", 4800.0, {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}),
    ("H100 PCIe", 2000.0, {"bfloat16": 756.0, "float16": 756.0, "float32": 51.2}),
    ("H100", 3350.0, {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}),
    ("A100-SXM4-80GB", 2039.0, {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}),
    ("A100 80GB PCIe", 1935.0, {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}),
    ("A100", 1555.0, {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}),
    ("L40S", 864.0, {"bfloat16": 362.0, "float16": 362.0, "float32": 91.6}),
    ("RTX 4090", 1008.0, {"bfloat16": 165.2, "float16": 165.2, "float32": 82.6}),
]


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


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _measure_copy(device: torch.device) -> Ceiling:
    nbytes = (512 if device.type == "cuda" else 128) * 1024 * 1024
    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    samples = measure(lambda: dst.copy_(src), Budget(warmup_s=0.2, measure_s=1.0, min_reps=10),
                      device, "events" if device.type == "cuda" else "cpu")
    median = sorted(samples)[len(samples) // 2]
    return Ceiling(2 * nbytes / median / 1e9, "GB/s", "measured",
                   f"median of {len(samples)} copies of {nbytes >> 20} MiB, read + write bytes, "
                   f"measured {datetime.date.today().isoformat()}")


def _measure_matmul(device: torch.device, dtype: torch.dtype) -> Ceiling:
    if device.type == "cuda":
        n = 4096 if dtype == torch.float32 else 8192
    else:
        n = 1024 if dtype == torch.float32 else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    samples = measure(lambda: torch.matmul(a, b), Budget(warmup_s=0.3, measure_s=1.0, min_reps=5),
                      device, "events" if device.type == "cuda" else "cpu")
    median = sorted(samples)[len(samples) // 2]
    return Ceiling(2 * n**3 / median / 1e12, "TFLOP/s", "measured",
                   f"median of {len(samples)} {n}x{n}x{n} {_dtype_name(dtype)} matmuls, "
                   f"measured {datetime.date.today().isoformat()}")


def _datasheet(name: str, dtype: torch.dtype) -> dict[str, Ceiling]:
    for pattern, copy_gbps, matmul in DATASHEET:
        if pattern in name:
            found = {"copy_gbps": Ceiling(copy_gbps, "GB/s", "datasheet", f"{pattern} datasheet peak")}
            if _dtype_name(dtype) in matmul:
                found["matmul_tflops"] = Ceiling(matmul[_dtype_name(dtype)], "TFLOP/s", "datasheet",
                                                 f"{pattern} datasheet dense peak")
            return found
    return {}


def _load_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _store_cache(cache: dict) -> None:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(cache, indent=2, sort_keys=True))
    os.replace(temporary, path)


def get_ceilings(device: torch.device, dtype: torch.dtype, remeasure: bool = False) -> dict[str, Ceiling]:
    """``copy_gbps`` and ``matmul_tflops`` for ``device`` (matmul in ``dtype``), cached."""
    name = device_name(device)
    key = f"{name} | torch {torch.__version__}"
    cache = _load_cache()
    entry = cache.setdefault(key, {})
    wanted = {"copy_gbps": ("copy_gbps", lambda: _measure_copy(device)),
              "matmul_tflops": (f"matmul_tflops/{_dtype_name(dtype)}", lambda: _measure_matmul(device, dtype))}
    result, changed = {}, False
    for label, (slot, measure_it) in wanted.items():
        if slot in entry and not remeasure:
            result[label] = Ceiling(**entry[slot])
            continue
        try:
            ceiling = measure_it()
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


def roofline(flops: float, nbytes: float, ceilings: dict[str, Ceiling]) -> float | None:
    """The shortest time, in seconds, that the FLOPs and bytes allow on these ceilings."""
    floors = []
    if flops and "matmul_tflops" in ceilings:
        floors.append(flops / (ceilings["matmul_tflops"].value * 1e12))
    if nbytes and "copy_gbps" in ceilings:
        floors.append(nbytes / (ceilings["copy_gbps"].value * 1e9))
    return max(floors) if floors else None
