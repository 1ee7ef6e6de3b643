"""Triton microkernels that measure a GPU's non-matmul compute ceilings.

Both keep values in registers for ``ITERATIONS`` dependent steps per element on four
independent chains (so the scheduler can overlap them), read one input and write
one output per element: the memory traffic is negligible against the arithmetic.

- ``fma_chain``: ``x = x * a + b``, two FP32 FLOPs per step per chain: the FP32
  (CUDA-core, non-tensor) rate, the ceiling of scans and element-wise math.
- ``exp_chain``: ``x = exp(-x)``, one exponential per step per chain: the
  special-function rate, which bounds softmax and SSM decays.
"""

import triton
import triton.language as tl

CHAINS = 4


@triton.jit
def fma_chain_kernel(x_ptr, out_ptr, ITERATIONS: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets)
    a, b = 0.999 + x * 1e-6, x * 1e-3
    chain0, chain1, chain2, chain3 = x, x + 1.0, x + 2.0, x + 3.0
    for _ in range(ITERATIONS):
        chain0 = chain0 * a + b
        chain1 = chain1 * a + b
        chain2 = chain2 * a + b
        chain3 = chain3 * a + b
    tl.store(out_ptr + offsets, chain0 + chain1 + chain2 + chain3)


@triton.jit
def exp_chain_kernel(x_ptr, out_ptr, ITERATIONS: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets)
    chain0, chain1, chain2, chain3 = x, x + 0.25, x + 0.5, x + 0.75
    for _ in range(ITERATIONS):
        chain0 = tl.exp(-chain0)
        chain1 = tl.exp(-chain1)
        chain2 = tl.exp(-chain2)
        chain3 = tl.exp(-chain3)
    tl.store(out_ptr + offsets, chain0 + chain1 + chain2 + chain3)
