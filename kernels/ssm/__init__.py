"""State-space-model scans: the first-order linear recurrence, Mamba's selective scan and Mamba-2's SSD scan."""

from menagerie.kernels.ssm.linear_scan import linear_scan
from menagerie.kernels.ssm.linear_scan_reference import linear_scan_reference, linear_scan_sequential
from menagerie.kernels.ssm.selective_scan import selective_scan
from menagerie.kernels.ssm.selective_scan_reference import selective_scan_reference, selective_scan_sequential
from menagerie.kernels.ssm.ssd import ssd_scan
from menagerie.kernels.ssm.ssd_reference import ssd_chunked_reference, ssd_recurrence_reference

__all__ = [
    "linear_scan",
    "linear_scan_reference",
    "linear_scan_sequential",
    "selective_scan",
    "selective_scan_reference",
    "selective_scan_sequential",
    "ssd_chunked_reference",
    "ssd_recurrence_reference",
    "ssd_scan",
]
