"""Which device to run on, how to wait for it, and what it is called."""

from __future__ import annotations

import platform

import torch


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def parse_device(text: str) -> torch.device:
    """A torch.device from user input, with a clear error for unusable devices."""
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise ValueError(f"--device: {text!r} is not a device name (use 'cpu' or 'cuda')") from error
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: only 'cpu' and 'cuda' are supported, got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: 'cuda' requested but no CUDA device is available")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()
