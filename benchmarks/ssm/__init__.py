"""The SSM family, one module per kind of benchmark:

- ``scans``: ``ssm.linear_scan`` (``x_t = a_t x_{t-1} + b_t``) and ``ssm.selective_scan`` (Mamba's scan);
- ``ssd``: ``ssm.ssd``, Mamba-2's SSD scan;
- ``blocks``: ``ssm.mamba_block`` and ``ssm.mamba2_block``, whole blocks around those scans;
- ``mamba2_shapes``: the Mamba-2 models whose shapes the SSD and block cases take.
"""

# Each module registers its benchmarks when imported; in this order, the family's order of registration.
from menagerie.benchmarks.ssm import (
    blocks,  # noqa: F401
    scans,  # noqa: F401
    ssd,  # noqa: F401
)

# The peer adapters, which tests/ssm check against the peers' own references.
from menagerie.benchmarks.ssm.scans import hgrn_as_linear_scan  # noqa: F401
from menagerie.benchmarks.ssm.ssd import simple_gla_as_ssd  # noqa: F401
