"""A Mamba-2 block (Dao & Gu, 2024) built on the suite's SSD scan.

``(batch, L, d_model) -> (batch, L, d_model)``, with the structure of mamba-ssm's ``Mamba2``
module (its unfused path, no tensor parallelism, no inference cache):

1. one input projection to ``z`` (d_inner), ``xBC`` (d_inner + 2 * ngroups * d_state) and
   ``dt`` (one step per head);
2. a causal depthwise convolution (width ``d_conv``, with bias) and SiLU over ``xBC``, which
   is then split into ``x (batch, L, heads, headdim)`` and ``B``, ``C (batch, L, ngroups, d_state)``;
3. the SSD scan with ``A = -exp(A_log)`` (one scalar per head), the skip ``D`` per head, and
   ``dt' = softplus(dt + dt_bias)``;
4. a gated RMSNorm, ``norm(y * silu(z))``, normalised over each group's ``d_inner / ngroups``
   channels (mamba-ssm's ``RMSNormGated`` with ``norm_before_gate=False``), in float32;
5. an output projection.

Parameters are named and initialised as in mamba-ssm (``in_proj``, ``conv1d``, ``dt_bias``,
``A_log``, ``D``, ``norm.weight``, ``out_proj``; A uniform in ``A_init_range``, dt log-uniform
in ``[dt_min, dt_max]`` floored at ``dt_init_floor`` through the bias), so a state dict moves
between the two. ``scan`` chooses the SSD implementation: the Triton kernel by default, the
chunked PyTorch reference for the benchmark's reference row; both take ``ssd_scan``'s arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from menagerie.kernels.ssm import ssd_scan


class GatedRMSNorm(nn.Module):
    """``rmsnorm(y * silu(z)) * weight`` over groups of ``group_size`` channels, in float32 (or float64)."""

    def __init__(self, channels: int, group_size: int, eps: float = 1e-5):
        super().__init__()
        if channels % group_size:
            raise ValueError(f"channels ({channels}) must be a multiple of group_size ({group_size})")
        self.group_size, self.eps = group_size, eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        compute = torch.promote_types(y.dtype, torch.float32)
        gated = y.to(compute) * F.silu(z.to(compute))
        grouped = gated.unflatten(-1, (-1, self.group_size))
        normed = grouped * torch.rsqrt(grouped.square().mean(-1, keepdim=True) + self.eps)
        return (normed.flatten(-2) * self.weight.to(compute)).to(y.dtype)


class Mamba2Block(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        chunk_size: int = 256,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        norm_eps: float = 1e-5,
        scan: Callable = ssd_scan,
    ):
        super().__init__()
        sizes = dict(
            d_model=d_model,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            headdim=headdim,
            ngroups=ngroups,
            chunk_size=chunk_size,
        )
        not_positive = [f"{name}={value}" for name, value in sizes.items() if value <= 0]
        if not_positive:
            raise ValueError(f"sizes must be positive, got {', '.join(not_positive)}")
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(f"d_model * expand ({self.d_inner}) must be divisible by headdim ({headdim})")
        self.nheads = self.d_inner // headdim
        if self.nheads % ngroups:
            raise ValueError(
                f"the number of heads (d_model * expand / headdim = {self.nheads}) must be "
                f"divisible by ngroups ({ngroups})"
            )
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"A_init_range must satisfy 0 < low <= high, got {A_init_range}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.d_state, self.headdim, self.ngroups, self.chunk_size = d_state, headdim, ngroups, chunk_size
        self.scan = scan
        conv_channels = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + conv_channels + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_channels, conv_channels, d_conv, groups=conv_channels, padding=d_conv - 1)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus: softplus(bias) = dt
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = GatedRMSNorm(self.d_inner, self.d_inner // ngroups, eps=norm_eps)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 3 or hidden.shape[-1] != self.in_proj.in_features:
            raise ValueError(f"hidden: expected (batch, L, {self.in_proj.in_features}), got {tuple(hidden.shape)}")
        length = hidden.shape[1]
        group_width = self.ngroups * self.d_state
        z, xBC, dt = self.in_proj(hidden).split([self.d_inner, self.d_inner + 2 * group_width, self.nheads], -1)
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :length]).transpose(1, 2)
        x, B, C = xBC.split([self.d_inner, group_width, group_width], -1)
        y = self.scan(
            x.unflatten(-1, (self.nheads, self.headdim)),
            dt,
            -torch.exp(self.A_log.float()),
            B.unflatten(-1, (self.ngroups, self.d_state)),
            C.unflatten(-1, (self.ngroups, self.d_state)),
            chunk_size=self.chunk_size,
            D=self.D,
            dt_bias=self.dt_bias,
            dt_softplus=True,
        )
        return self.out_proj(self.norm(y.flatten(-2), z))
