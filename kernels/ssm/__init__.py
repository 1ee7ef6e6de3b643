"""State-space-model scans: the first-order linear recurrence and Mamba's selective scan."""

from kernels.ssm.linear_scan import linear_scan
from kernels.ssm.reference import linear_scan_reference, linear_scan_sequential
from kernels.ssm.selective_scan import selective_scan
from kernels.ssm.selective_scan_reference import selective_scan_reference, selective_scan_sequential

__all__ = ["linear_scan", "linear_scan_reference", "linear_scan_sequential", "selective_scan",
           "selective_scan_reference", "selective_scan_sequential"]
