"""The linear recurrence ``x_t = a_t * x_{t-1} + b_t`` in hand-written CUDA C, through CuPy.

Same contract as ``menagerie.kernels.ssm.linear_scan`` (``(B, C, T)``, fp32 / fp16 / bf16,
float32 state), so the suite can compare Triton with CUDA C on one operation.
Tensors are shared with torch through DLPack (no copies) and kernels run on
torch's current stream.

One warp owns one sequence and walks it in chunks of 32 lanes × 4 elements: each
lane composes its 4 steps sequentially, the warp scans the 32 lane aggregates
with shuffles, and the chunk's total carries the state to the next chunk. The
backward runs the same machinery from the end of the sequence (see
linear_scan.py for the gradient recurrence).

CuPy is optional: without it, or without a GPU, ``unavailable_reason`` says why
and the benchmark reports the variant as skipped.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import NamedTuple

import torch

from menagerie.kernels.ssm.linear_scan import LinearScanFunction, ScanLaunchers, check_scan_inputs

WARPS_PER_BLOCK = 4
CUDA_SOURCE = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

#define ELEMS 4
#define CHUNK (32 * ELEMS)

// Composition of affine steps: first (a1, b1), then (a2, b2).
__device__ __forceinline__ void compose(float& a1, float& b1, float a2, float b2) {
    b1 = b1 * a2 + b2;
    a1 = a1 * a2;
}

// Exclusive warp scan of (a, b): on return, the composition of all lanes before this one.
// Also returns the composition over the whole warp in (a_total, b_total).
__device__ __forceinline__ void warp_exclusive_scan(float& a, float& b, float& a_total, float& b_total) {
    const unsigned lane = threadIdx.x & 31;
    for (int offset = 1; offset < 32; offset *= 2) {
        float a_up = __shfl_up_sync(0xffffffffu, a, offset);
        float b_up = __shfl_up_sync(0xffffffffu, b, offset);
        if (lane >= offset) {  // (earlier lanes' composition) then (this lane's)
            b = b_up * a + b;
            a = a_up * a;
        }
    }
    a_total = __shfl_sync(0xffffffffu, a, 31);
    b_total = __shfl_sync(0xffffffffu, b, 31);
    float a_before = __shfl_up_sync(0xffffffffu, a, 1);
    float b_before = __shfl_up_sync(0xffffffffu, b, 1);
    a = lane == 0 ? 1.0f : a_before;
    b = lane == 0 ? 0.0f : b_before;
}

extern "C" __global__ void linear_scan_fwd(const SCALAR* __restrict__ gates, const SCALAR* __restrict__ tokens,
                                           SCALAR* __restrict__ states, long long rows, long long length) {
    const long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;  // whole warps leave together, so the shuffles stay convergent
    const unsigned lane = threadIdx.x & 31;
    const SCALAR* a_row = gates + row * length;
    const SCALAR* b_row = tokens + row * length;
    SCALAR* x_row = states + row * length;
    float carry = 0.0f;
    for (long long start = 0; start < length; start += CHUNK) {
        float a[ELEMS], b[ELEMS];
        float lane_a = 1.0f, lane_b = 0.0f;
        for (int i = 0; i < ELEMS; ++i) {
            long long t = start + lane * ELEMS + i;
            a[i] = t < length ? to_float(a_row[t]) : 1.0f;
            b[i] = t < length ? to_float(b_row[t]) : 0.0f;
            compose(lane_a, lane_b, a[i], b[i]);
        }
        float a_total, b_total;
        warp_exclusive_scan(lane_a, lane_b, a_total, b_total);
        float state = lane_a * carry + lane_b;
        for (int i = 0; i < ELEMS; ++i) {
            long long t = start + lane * ELEMS + i;
            state = a[i] * state + b[i];
            if (t < length) store(x_row + t, state);
        }
        carry = a_total * carry + b_total;
    }
}

// h_t = g_t + a_{t+1} h_{t+1}; da_t = h_t x_{t-1}; db_t = h_t. Walked from the end:
// reversed position r is step t = length - 1 - r.
extern "C" __global__ void linear_scan_bwd(const SCALAR* __restrict__ gates, const SCALAR* __restrict__ states,
                                           const SCALAR* __restrict__ grad_states, SCALAR* __restrict__ grad_gates,
                                           SCALAR* __restrict__ grad_tokens, long long rows, long long length) {
    const long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const unsigned lane = threadIdx.x & 31;
    const SCALAR* a_row = gates + row * length;
    const SCALAR* x_row = states + row * length;
    const SCALAR* g_row = grad_states + row * length;
    SCALAR* da_row = grad_gates + row * length;
    SCALAR* db_row = grad_tokens + row * length;
    float carry = 0.0f;
    for (long long start = 0; start < length; start += CHUNK) {
        float a[ELEMS], g[ELEMS];
        float lane_a = 1.0f, lane_g = 0.0f;
        for (int i = 0; i < ELEMS; ++i) {
            long long t = length - 1 - (start + lane * ELEMS + i);
            a[i] = (t >= 0 && t + 1 < length) ? to_float(a_row[t + 1]) : (t >= 0 ? 0.0f : 1.0f);
            g[i] = t >= 0 ? to_float(g_row[t]) : 0.0f;
            compose(lane_a, lane_g, a[i], g[i]);
        }
        float a_total, g_total;
        warp_exclusive_scan(lane_a, lane_g, a_total, g_total);
        float h = lane_a * carry + lane_g;
        for (int i = 0; i < ELEMS; ++i) {
            long long t = length - 1 - (start + lane * ELEMS + i);
            h = a[i] * h + g[i];
            if (t >= 0) {
                store(db_row + t, h);
                store(da_row + t, t >= 1 ? h * to_float(x_row[t - 1]) : 0.0f);
            }
        }
        carry = a_total * carry + g_total;
    }
}
"""

C_TYPES = {torch.float32: "float", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}


class CudaProgram(NamedTuple):
    """What CuPy compiles (with NVRTC) for one dtype; ``menagerie compile`` builds the same offline."""

    name: str
    source: str
    options: tuple[str, ...]
    functions: tuple[str, ...]
    threads_per_block: int


def program(dtype: torch.dtype) -> CudaProgram:
    return CudaProgram(
        f"linear_scan_cuda[{C_TYPES[dtype]}]",
        CUDA_SOURCE,
        ("--std=c++17", f"-DSCALAR={C_TYPES[dtype]}"),
        ("linear_scan_fwd", "linear_scan_bwd"),
        32 * WARPS_PER_BLOCK,
    )


def unavailable_reason(device: torch.device) -> str | None:
    """Why the CUDA C variant cannot run on ``device``, or None when it can."""
    if device.type != "cuda":
        return "the CUDA C variant needs a CUDA device"
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed (pip install 'menagerie[cuda]')"
    import cupy

    if not cupy.is_available():
        return "cupy cannot reach a CUDA device"
    return None


@functools.cache
def _kernels(dtype: torch.dtype):
    import cupy

    built = program(dtype)
    module = cupy.RawModule(code=built.source, options=built.options)
    return tuple(module.get_function(name) for name in built.functions)


def _launch(kernel, tensors: list[torch.Tensor], rows: int, length: int) -> None:
    import cupy

    arrays = [cupy.from_dlpack(tensor.detach()) for tensor in tensors]
    blocks = (rows + WARPS_PER_BLOCK - 1) // WARPS_PER_BLOCK
    with cupy.cuda.ExternalStream(torch.cuda.current_stream(tensors[0].device).cuda_stream):
        kernel((blocks,), (32 * WARPS_PER_BLOCK,), (*arrays, cupy.int64(rows), cupy.int64(length)))


def _cuda_forward(gates, tokens, states, rows, length):
    _launch(_kernels(tokens.dtype)[0], [gates, tokens, states], rows, length)


def _cuda_backward(gates, states, grad_states, grad_gates, grad_tokens, rows, length):
    _launch(_kernels(states.dtype)[1], [gates, states, grad_states, grad_gates, grad_tokens], rows, length)


CUDA_LAUNCHERS = ScanLaunchers(_cuda_forward, _cuda_backward)


def linear_scan_cuda(gates: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``x_t = gates_t * x_{t-1} + tokens_t`` in CUDA C through CuPy, differentiable."""
    check_scan_inputs(gates, tokens)
    reason = unavailable_reason(tokens.device)
    if reason:
        raise RuntimeError(f"linear_scan_cuda: {reason}")
    return LinearScanFunction.apply(gates, tokens, CUDA_LAUNCHERS)
