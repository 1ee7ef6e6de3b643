"""Throttled blocks: a block timed while the GPU slowed down is taken again, or flagged.

nvbench flags samples taken below 75% of the default SM clock. Here, on a GPU, the SM clock
and the clock-event reasons (NVML) are read at the start and at the end of every timed
block. A block is *throttled* when either read shows a clock below ``min_clock`` times the
reference clock (the highest read right after the warm-ups, under load), or a thermal,
power or hardware slowdown reason (``SLOWDOWN_REASONS``). A throttled block's samples are
dropped and the block is taken again, up to ``max_retakes`` times per implementation and
case; after that a throttled block's samples are kept and counted, and the runner gives
the row status ``throttled``, which the gate treats as undecided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # `menagerie run --help` reads DEFAULT_MIN_CLOCK without importing torch
    import torch

# NVML's clock-event reasons that mean the GPU is being slowed down (nvmlClocksEventReason*): the software power
# cap, hardware slowdown, software and hardware thermal slowdown and the hardware power brake. Idle, application
# clock settings, sync boost and display clocks are not.
SLOWDOWN_REASONS = {
    0x4: "power cap",
    0x8: "hardware slowdown",
    0x20: "thermal (software)",
    0x40: "thermal (hardware)",
    0x80: "power brake",
}
DEFAULT_MIN_CLOCK = 0.9
DEFAULT_MAX_RETAKES = 20


class ClockReader(Protocol):
    def __call__(self) -> tuple[float, int]:
        """The SM clock in MHz and the clock-event reasons bitmask, now."""


@dataclass
class BlockWatch:
    """Reads the clock around blocks; counts per timer what it retook and what it kept throttled."""

    read: ClockReader
    min_clock: float = DEFAULT_MIN_CLOCK
    max_retakes: int = DEFAULT_MAX_RETAKES
    reference_mhz: float = 0.0
    retaken: dict[int, int] = field(default_factory=dict)
    kept_throttled: dict[int, int] = field(default_factory=dict)
    reasons_seen: dict[int, set[str]] = field(default_factory=dict)

    def calibrate(self) -> None:
        """Right after a warm-up, under load: the reference clock is the highest read so far."""
        self.reference_mhz = max(self.reference_mhz, self.read()[0])

    def throttled(self, index: int, before: tuple[float, int], after: tuple[float, int]) -> bool:
        """Whether a block between these two reads was throttled; notes why for timer ``index``."""
        why = {name for _, reasons in (before, after) for bit, name in SLOWDOWN_REASONS.items() if reasons & bit}
        if self.reference_mhz and min(before[0], after[0]) < self.min_clock * self.reference_mhz:
            why.add(
                f"SM clock {min(before[0], after[0]):.0f} MHz < {self.min_clock:.0%} of {self.reference_mhz:.0f} MHz"
            )
        if why:
            self.reasons_seen.setdefault(index, set()).update(why)
        return bool(why)

    def retake(self, index: int) -> bool:
        """Whether timer ``index`` may take a throttled block again (and counts it), else counts the block kept."""
        if self.retaken.get(index, 0) < self.max_retakes:
            self.retaken[index] = self.retaken.get(index, 0) + 1
            return True
        self.kept_throttled[index] = self.kept_throttled.get(index, 0) + 1
        return False

    def summary(self, index: int) -> dict:
        return {
            "retaken_blocks": self.retaken.get(index, 0),
            "throttled_blocks_kept": self.kept_throttled.get(index, 0),
            "reasons": sorted(self.reasons_seen.get(index, ())),
            "reference_mhz": self.reference_mhz,
        }


def nvml_reader(device: torch.device) -> Callable[[], tuple[float, int]] | None:
    """A reader of ``device``'s SM clock and clock-event reasons through NVML; None on the CPU or without NVML."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        from menagerie.harness.provenance import nvml_handle

        pynvml.nvmlInit()
        handle = nvml_handle(pynvml, device)
    except Exception:  # no NVML library, no such device: the run goes on without the watch
        return None
    reasons = (
        getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
    )

    def read() -> tuple[float, int]:
        return float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)), int(reasons(handle))

    return read
