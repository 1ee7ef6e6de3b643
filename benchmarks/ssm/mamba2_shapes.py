"""The shapes of Mamba-2 mixers, written once for the SSD and the block benchmarks."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Mamba2Mixer:
    """A Mamba-2 mixer: ``d_model`` wide, expanded twice into heads of ``head_dim`` channels, ``state`` (N) states
    per group of heads sharing B and C, the SSD scan in chunks of ``chunk`` steps."""

    d_model: int
    head_dim: int
    state: int
    groups: int
    chunk: int

    @property
    def heads(self) -> int:
        return 2 * self.d_model // self.head_dim


# Mamba-2 370M (32 heads of 64) and 2.7B (80 heads of 64): N 128, one group, chunks of 256.
MAMBA2_370M = Mamba2Mixer(d_model=1024, head_dim=64, state=128, groups=1, chunk=256)
MAMBA2_2_7B = Mamba2Mixer(d_model=2560, head_dim=64, state=128, groups=1, chunk=256)
