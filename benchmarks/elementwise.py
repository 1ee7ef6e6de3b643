"""``elementwise.bias_gelu``: the harness's built-in end-to-end benchmark.

Fused Triton bias + GELU against PyTorch's two unfused ops. Memory-bound: the
roofline that matters is bytes over copy bandwidth.
"""

import functools

import torch

from menagerie.benchmarks import interpreted_bf16
from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, cost_of_mode, needs, register
from menagerie.kernels.elementwise import bias_gelu, bias_gelu_reference

# Per element: the bias add, the cubic polynomial (5), the sigmoid's non-exp part
# (3) and the final product: 10 FLOPs and one exponential.
FWD_FLOPS_PER_ELEMENT = 10
# The forward's work again, the derivative (9) and the bias-gradient sum (1).
BWD_FLOPS_PER_ELEMENT = 20


def bias_gelu_case(*, rows, cols):
    return Case(f"{rows}x{cols}", {"rows": rows, "cols": cols})


def make_inputs(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    rows, cols = case.params["rows"], case.params["cols"]
    x = torch.randn(rows, cols, generator=generator).to(device, dtype)
    bias = torch.randn(cols, generator=generator).to(device, dtype)
    return {"x": x, "bias": bias}


def cost(case: Case, mode: str, dtype: torch.dtype) -> Cost:
    rows, cols = case.params["rows"], case.params["cols"]
    elements, item = rows * cols, dtype.itemsize
    fwd = Cost(
        flops=FWD_FLOPS_PER_ELEMENT * elements, bytes=(2 * elements + cols) * item, exp=elements, flop_ceiling="fp32"
    )
    # Backward reads x, dy and bias, writes dx and dbias.
    bwd = Cost(
        flops=BWD_FLOPS_PER_ELEMENT * elements,
        bytes=(3 * elements + 2 * cols) * item,
        exp=elements,
        flop_ceiling="fp32",
    )
    return cost_of_mode(mode, fwd, bwd)


@functools.cache
def _compiled_bias_gelu():
    return torch.compile(bias_gelu_reference)


def bias_gelu_compiled(x, bias):
    return _compiled_bias_gelu()(x, bias)


register(
    Benchmark(
        name="elementwise.bias_gelu",
        description="y = gelu(x + bias) (tanh approximation), x (N, C), bias (C,)",
        cases={
            "tiny": [bias_gelu_case(rows=64, cols=257), bias_gelu_case(rows=129, cols=1000)],
            "small": [bias_gelu_case(rows=4096, cols=4096), bias_gelu_case(rows=8191, cols=4099)],
            "full": [bias_gelu_case(rows=16384, cols=8192), bias_gelu_case(rows=32768, cols=16384)],
        },
        make_inputs=make_inputs,
        reference=Impl("torch", bias_gelu_reference, role="reference", note="x + bias, then F.gelu"),
        variants=[Impl("triton_fused", bias_gelu, skip_reason=interpreted_bf16, triton=True)],
        peers=[
            Impl(
                "torch_compile",
                bias_gelu_compiled,
                role="peer",
                poison=False,
                skip_reason=needs(
                    "torch.compile peer", cuda=True, why="on the CPU its compile time dominates tiny runs"
                ),
            )
        ],
        modes=("fwd", "bwd", "fwd_bwd"),
        grad_inputs=("x", "bias"),
        cost=cost,
        # About two units in the last place of each dtype, relative; the absolute part
        # covers values near zero and, in fp32, the bias gradient's sum over up to 32k rows.
        tolerances={
            torch.float32: Tolerance(atol=1e-4, rtol=2.5e-7),
            torch.float16: Tolerance(atol=1e-3, rtol=2e-3),
            torch.bfloat16: Tolerance(atol=8e-3, rtol=1.6e-2),
        },
    )
)
