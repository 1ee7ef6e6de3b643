"""Our SSM references and kernels against the peers' own plain-PyTorch references, and the
benchmarks' peer adapters through those references (each test is skipped when its peer does not
import: mamba-ssm needs its CUDA extensions to import at all)."""

import pytest
import torch
import torch.nn.functional as F

from menagerie.benchmarks.ssm import hgrn_as_linear_scan, simple_gla_as_ssd
from menagerie.kernels.ssm import (
    linear_scan,
    linear_scan_reference,
    selective_scan,
    selective_scan_reference,
    ssd_chunked_reference,
    ssd_scan,
)


def _ssd_inputs(generator, batch=2, length=45, heads=4, head_dim=8, groups=2, state=8):
    return dict(
        x=torch.randn(batch, length, heads, head_dim, generator=generator),
        dt=torch.randn(batch, length, heads, generator=generator) - 2.0,
        A=-(1.0 + 4.0 * torch.rand(heads, generator=generator)),
        B=torch.randn(batch, length, groups, state, generator=generator),
        C=torch.randn(batch, length, groups, state, generator=generator),
    )


def test_linear_scans_match_fla_hgrn_through_the_benchmark_adapter():
    naive = pytest.importorskip("fla.ops.hgrn.naive")
    generator = torch.Generator().manual_seed(0)
    gates = torch.sigmoid(torch.randn(2, 5, 50, generator=generator) + 1.0)
    tokens = torch.randn(2, 5, 50, generator=generator)
    expected = hgrn_as_linear_scan(naive.naive_recurrent_hgrn, gates, tokens)  # fla computes in float32
    for scan in (linear_scan_reference, linear_scan):
        torch.testing.assert_close(
            scan(gates, tokens), expected, atol=1e-5, rtol=1e-5, msg=lambda m, scan=scan: f"{scan}: {m}"
        )


def test_ssd_scans_match_fla_simple_gla_through_the_benchmark_adapter():
    naive = pytest.importorskip("fla.ops.simple_gla.naive")
    generator = torch.Generator().manual_seed(1)
    inputs = _ssd_inputs(generator)
    D, dt_bias = torch.randn(4, generator=generator), torch.randn(4, generator=generator)

    def fla_reference(q, k, v, g, scale):
        return naive.naive_chunk_simple_gla(q, k, v, g, chunk_size=16, scale=scale)

    # fla's reference runs in float32 with differences of cumulative log decays: float32 roundings.
    expected = simple_gla_as_ssd(fla_reference, **inputs, D=D, dt_bias=dt_bias, dt_softplus=True)
    for scan in (ssd_chunked_reference, ssd_scan):
        out = scan(**inputs, chunk_size=16, D=D, dt_bias=dt_bias, dt_softplus=True)
        torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4, msg=lambda m, scan=scan: f"{scan}: {m}")


def test_ssd_chunked_reference_matches_mamba_ssm_minimal_ssd():
    minimal = pytest.importorskip("mamba_ssm.modules.ssd_minimal")
    generator = torch.Generator().manual_seed(2)
    inputs = {name: value.double() for name, value in _ssd_inputs(generator, length=48).items()}
    steps = F.softplus(inputs["dt"])
    x, A, B, C = inputs["x"], inputs["A"], inputs["B"], inputs["C"]
    # ssd_minimal_discrete takes the discretized inputs, one B and C per head, L a multiple of the chunk.
    expected, expected_state = minimal.ssd_minimal_discrete(
        x * steps[..., None], A * steps, B.repeat_interleave(2, dim=2), C.repeat_interleave(2, dim=2), 16
    )
    out, state = ssd_chunked_reference(**inputs, chunk_size=16, dt_softplus=True, return_final_states=True)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(state, expected_state, atol=1e-10, rtol=1e-10)


def test_selective_scans_match_mamba_ssm_reference():
    interface = pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
    generator = torch.Generator().manual_seed(3)
    batch, dim, length, state, groups = 2, 4, 33, 8, 2
    inputs = dict(
        u=torch.randn(batch, dim, length, generator=generator),
        delta=0.5 * torch.rand(batch, dim, length, generator=generator),
        A=-0.5 * torch.rand(dim, state, generator=generator),
        B=torch.randn(batch, groups, state, length, generator=generator),
        C=torch.randn(batch, groups, state, length, generator=generator),
        D=torch.randn(dim, generator=generator),
        z=torch.randn(batch, dim, length, generator=generator),
        delta_bias=0.5 * torch.rand(dim, generator=generator),
        delta_softplus=True,
    )
    expected = interface.selective_scan_ref(**inputs)  # float32 inside
    for scan in (selective_scan_reference, selective_scan):
        torch.testing.assert_close(
            scan(**inputs), expected, atol=1e-5, rtol=1e-5, msg=lambda m, scan=scan: f"{scan}: {m}"
        )
