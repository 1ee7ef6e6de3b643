"""Benchmarks with planted faults for ``menagerie compile`` (imported with ``--import``).

- ``faults.global_read``: a kernel that reads a global that is not a ``tl.constexpr``
  (the interpreter runs it; a GPU build fails).
- ``faults.tiles``: an autotuned matmul tile with one configuration that fits and one
  whose pipelined tiles need more shared memory than any GPU has.
- ``faults.register_hungry``: a kernel holding a 64 x 256 float32 accumulator in one
  warp (512 values per thread), which must spill.
"""

import torch
import triton
import triton.language as tl

from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, register

SCALE = 3.0  # deliberately not a tl.constexpr


@triton.jit
def _scale_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets, mask=offsets < n)
    tl.store(y_ptr + offsets, x * SCALE, mask=offsets < n)


def scale(x):
    y = torch.empty_like(x)
    _scale_kernel[(triton.cdiv(x.numel(), 128),)](x, y, x.numel(), BLOCK=128)
    return y


@triton.autotune(
    configs=[
        triton.Config({"BLOCK": 32}, num_warps=4, num_stages=1),
        triton.Config({"BLOCK": 256}, num_warps=8, num_stages=4),
    ],
    key=["size"],
)
@triton.jit
def _tile_kernel(a_ptr, b_ptr, c_ptr, size, BLOCK: tl.constexpr):
    rows = tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for start in range(0, size, BLOCK):
        inner = start + tl.arange(0, BLOCK)
        a = tl.load(
            a_ptr + rows[:, None] * size + inner[None, :], mask=(rows[:, None] < size) & (inner[None, :] < size)
        )
        b = tl.load(
            b_ptr + inner[:, None] * size + rows[None, :], mask=(inner[:, None] < size) & (rows[None, :] < size)
        )
        acc = tl.dot(a, b, acc)
    tl.store(
        c_ptr + rows[:, None] * size + rows[None, :],
        acc.to(c_ptr.dtype.element_ty),
        mask=(rows[:, None] < size) & (rows[None, :] < size),
    )


def tile_product(a, b):
    c = torch.empty_like(a)
    _tile_kernel[(1,)](a, b, c, a.shape[0])
    return c


@triton.jit
def _hungry_kernel(x_ptr, y_ptr, steps, ROWS: tl.constexpr, COLS: tl.constexpr):
    offsets = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
    acc = tl.zeros((ROWS, COLS), dtype=tl.float32)
    for step in range(steps):
        acc = acc * 0.5 + tl.load(x_ptr + offsets).to(tl.float32) * step
    tl.store(y_ptr + offsets, acc.to(y_ptr.dtype.element_ty))


def hungry(x):
    y = torch.empty_like(x)
    _hungry_kernel[(1,)](x, y, 3, ROWS=x.shape[0], COLS=x.shape[1], num_warps=1)
    return y


def _benchmark(name, fn, reference, shapes: dict):
    def make_inputs(case, dtype, device, seed):
        generator = torch.Generator().manual_seed(seed)
        return {arg: torch.randn(shape, generator=generator).to(device, dtype) for arg, shape in shapes.items()}

    return register(
        Benchmark(
            name=f"faults.{name}",
            description=f"planted fault: {name}",
            cases={"tiny": [Case("one", {})]},
            make_inputs=make_inputs,
            reference=Impl("reference", reference, role="reference"),
            variants=[Impl("triton", fn, triton=True)],
            cost=lambda case, mode, dtype: Cost(),
            tolerances={torch.float16: Tolerance(atol=1e-2, rtol=1e-2)},
        )
    )


_benchmark("global_read", scale, lambda x: x * SCALE, {"x": (300,)})
_benchmark("tiles", tile_product, lambda a, b: a @ b, {"a": (64, 64), "b": (64, 64)})
_benchmark("register_hungry", hungry, lambda x: x * 2, {"x": (64, 256)})
