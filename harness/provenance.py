"""Where a result came from: source version, software stack, hardware, command.

On an NVIDIA GPU, ``gpu_state`` also reads the device through NVML (``nvidia-ml-py``):
UUID, clocks, temperature, power draw and limit, and the reasons the driver gives for
holding clocks down. ``collect`` records it once; the runner reads it again after each
case it timed, while the GPU is still under load, and ``clock_warnings`` says when the
clocks were not stable over a run (an SM clock that varied by more than
``CLOCK_VARIATION`` or a power, thermal or hardware slowdown), since every time measured
then depends on when it was taken.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from menagerie.harness.device import cpu_name, device_name

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state() -> dict:
    """Commit SHA, its subject line, and whether the working tree differs from it (None outside a checkout)."""
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {
        "sha": sha,
        "dirty": bool(status) if status is not None else None,
        "message": _git("show", "-s", "--format=%s", "HEAD") if sha else None,
    }


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _driver_version() -> str | None:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


CLOCK_VARIATION = 0.05
# NVML's clock-event (formerly "throttle") reason bits that mean the clocks were held below
# what the load asked for; the bits are the same under both names of the API.
SLOWDOWN_REASONS = {
    0x04: "software power cap",
    0x08: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}


def nvml_handle(pynvml, device: torch.device):
    """The NVML handle of a torch CUDA device, matched by UUID (CUDA_VISIBLE_DEVICES renumbers devices)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def gpu_state(device: torch.device) -> dict | None:
    """The GPU's identity, clocks, temperature and power now, from NVML; None off NVIDIA GPUs or
    where NVML cannot be read (nvidia-ml-py missing, no driver)."""
    if device.type != "cuda":
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        handle = nvml_handle(pynvml, device)
        clock = lambda kind: pynvml.nvmlDeviceGetClockInfo(handle, kind)  # noqa: E731
        max_clock = lambda kind: pynvml.nvmlDeviceGetMaxClockInfo(handle, kind)  # noqa: E731
        read_reasons = (
            getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        reasons = read_reasons(handle)
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        return {
            "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
            "sm_clock_mhz": clock(pynvml.NVML_CLOCK_SM),
            "memory_clock_mhz": clock(pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": max_clock(pynvml.NVML_CLOCK_SM),
            "max_memory_clock_mhz": max_clock(pynvml.NVML_CLOCK_MEM),
            "temperature_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            "power_draw_w": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000,
            "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000,
            "slowdowns": sorted(text for bit, text in SLOWDOWN_REASONS.items() if reasons & bit),
        }
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def clock_warnings(states: list[dict]) -> list[str]:
    """What makes timings taken at these GPU states less comparable (empty when clocks held steady)."""
    warnings = []
    clocks = [state["sm_clock_mhz"] for state in states]
    if clocks and max(clocks) > (1 + CLOCK_VARIATION) * min(clocks):
        warnings.append(
            f"SM clock under load varied from {min(clocks)} to {max(clocks)} MHz "
            f"(max {states[0]['max_sm_clock_mhz']} MHz): lock clocks (nvidia-smi -lgc) for steadier times"
        )
    slowdowns = sorted({reason for state in states for reason in state["slowdowns"]})
    if slowdowns:
        warnings.append(f"clocks held down during the run by: {', '.join(slowdowns)}")
    return warnings


def load_summary(states: list[dict]) -> dict | None:
    """The GPU states read after each timed case, summarized (None when there are none)."""
    if not states:
        return None

    def span(field):
        return [min(state[field] for state in states), max(state[field] for state in states)]

    return {
        "readings": len(states),
        **{field: span(field) for field in ("sm_clock_mhz", "memory_clock_mhz", "temperature_c", "power_draw_w")},
        "slowdowns": sorted({reason for state in states for reason in state["slowdowns"]}),
    }


def collect(device: torch.device, command: list[str] | None = None) -> dict:
    """Everything needed to reproduce or distrust a number."""
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "command": shlex.join(command if command is not None else sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _package_version("triton"),
        "cuda": torch.version.cuda,
        "driver": _driver_version() if device.type == "cuda" else None,
        "device": device_name(device),
        "device_type": device.type,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "gpu": gpu_state(device),
    }
