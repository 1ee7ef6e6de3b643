"""State-space-model scans: the linear recurrence (and, later, Mamba's selective scan)."""

from kernels.ssm.linear_scan import linear_scan
from kernels.ssm.reference import linear_scan_reference, linear_scan_sequential

__all__ = ["linear_scan", "linear_scan_reference", "linear_scan_sequential"]
