"""A Mamba block (Gu & Dao, 2023) built on the suite's selective scan.

``(batch, L, d_model) -> (batch, L, d_model)``: an input projection to ``x`` and the
gate ``z``; a causal depthwise convolution and SiLU on ``x``; a projection of ``x``
to the step sizes ``dt`` (through a low-rank ``dt_proj``), and to ``B`` and ``C``;
the selective scan with ``A = -exp(A_log)``, the skip ``D`` and the gate
``silu(z)``; an output projection. Parameters are initialised as mamba-ssm does
(S4D-real ``A``, ``dt`` log-uniform in ``[dt_min, dt_max]`` through the bias).

``scan`` chooses the selective-scan implementation (the Triton kernel by default,
the PyTorch reference for the benchmark's reference row).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from menagerie.kernels.ssm.selective_scan import selective_scan


class MambaBlock(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        scan: Callable = selective_scan,
    ):
        super().__init__()
        if d_model <= 0 or d_state <= 0 or d_conv <= 0 or expand <= 0:
            raise ValueError(
                f"d_model, d_state, d_conv and expand must be positive, got {d_model}, {d_state}, {d_conv}, {expand}"
            )
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.scan = scan
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        with torch.no_grad():
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus: softplus(bias) = dt

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 3 or hidden.shape[-1] != self.in_proj.in_features:
            raise ValueError(f"hidden: expected (batch, L, {self.in_proj.in_features}), got {tuple(hidden.shape)}")
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (batch, d_inner, L) each
        x = F.silu(self.conv1d(x)[..., :length])
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.A_log.shape[1], self.A_log.shape[1]], -1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # bias goes to the scan as delta_bias
        y = self.scan(
            x.contiguous(),
            delta.contiguous(),
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            self.D.float(),
            z=z.contiguous(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))
