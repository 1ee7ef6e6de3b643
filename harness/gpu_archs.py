"""The GPU architectures that ``menagerie compile`` builds for, and what each one allows.

Limits are NVIDIA's (CUDA C Programming Guide, "Technical Specifications per Compute
Capability"; SM counts of the datasheet parts named). ``tensor_core_sass`` lists the
SASS mnemonics of the tensor-core instructions that a kernel using ``tl.dot`` should
hold there: ``mma.sync`` (HMMA) on Ampere, warpgroup ``wgmma`` (HGMMA) on Hopper and
``tcgen05.mma`` (UTC*MMA) on Blackwell; integer and fp64 forms are listed too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  # "sm_90"
    capability: int  # 90
    part: str  # the part whose SM count stands in for the device's
    multiprocessors: int
    max_shared_per_block: int  # bytes, with the opt-in carve-out (what Triton may use)
    shared_per_sm: int  # bytes
    shared_reserved_per_block: int = 1024  # the driver keeps 1 KB of each block's share
    registers_per_sm: int = 65536
    max_registers_per_thread: int = 255
    max_threads_per_block: int = 1024
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    tensor_core_sass: tuple[str, ...] = ()

    def max_threads_for(self, registers: int) -> int:
        """Most threads a block may have at ``registers`` per thread (what cuFuncGetAttribute reports)."""
        warps = self.registers_per_sm // _registers_per_warp(registers)
        return min(self.max_threads_per_block, warps * 32)

    def occupancy(self, registers: int, shared_bytes: int, warps: int) -> tuple[int, float]:
        """Theoretical resident blocks per SM and the share of the SM's warp slots they fill."""
        threads = warps * 32
        by_threads = self.max_threads_per_sm // threads
        by_registers = self.registers_per_sm // (_registers_per_warp(registers) * warps)
        by_shared = (
            self.shared_per_sm // (shared_bytes + self.shared_reserved_per_block)
            if shared_bytes
            else self.max_blocks_per_sm
        )
        blocks = max(0, min(self.max_blocks_per_sm, by_threads, by_registers, by_shared))
        return blocks, blocks * threads / self.max_threads_per_sm

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "capability": self.capability,
            "part": self.part,
            "multiprocessors": self.multiprocessors,
            "max_shared_per_block": self.max_shared_per_block,
            "shared_per_sm": self.shared_per_sm,
            "registers_per_sm": self.registers_per_sm,
        }


def _registers_per_warp(registers: int) -> int:
    # Registers are allocated per warp in units of 256 (8 per thread).
    return max(256, math.ceil(registers * 32 / 256) * 256)


ARCHS = {
    arch.name: arch
    for arch in (
        Arch(
            "sm_80",
            80,
            "A100",
            108,
            max_shared_per_block=163 * 1024,
            shared_per_sm=164 * 1024,
            tensor_core_sass=("HMMA", "IMMA", "DMMA"),
        ),
        Arch(
            "sm_90",
            90,
            "H100 SXM",
            132,
            max_shared_per_block=227 * 1024,
            shared_per_sm=228 * 1024,
            tensor_core_sass=("HGMMA", "IGMMA", "QGMMA", "HMMA", "IMMA", "DMMA"),
        ),
        Arch(
            "sm_100",
            100,
            "B200",
            148,
            max_shared_per_block=227 * 1024,
            shared_per_sm=228 * 1024,
            tensor_core_sass=("UTCHMMA", "UTCQMMA", "UTCIMMA", "UTCOMMA", "HMMA", "IMMA", "DMMA"),
        ),
    )
}
DEFAULT_ARCHS = ("sm_80", "sm_90")


def parse_archs(text: str) -> list[Arch]:
    """``"sm_80,sm_90"`` (or ``80,90``) -> the Arch entries; ValueError naming an unknown one."""
    chosen = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name = part if part.startswith("sm_") else f"sm_{part}"
        if name not in ARCHS:
            raise ValueError(f"unknown architecture {part!r}; known: {', '.join(ARCHS)}")
        chosen.append(ARCHS[name])
    if not chosen:
        raise ValueError(f"expected a comma-separated list of architectures such as sm_80,sm_90, got {text!r}")
    return list(dict.fromkeys(chosen))
