import torch
import triton
import triton.language as tl

import menagerie.kernels  # noqa: F401  (Triton's interpreter on a machine without a GPU)
from menagerie.harness import runner
from menagerie.harness.autotune import chosen_configs
from menagerie.harness.registry import Impl
from tests.harness.toy import quick_config, toy_benchmark

CONFIGS = [triton.Config({"BLOCK": 16}, num_warps=1), triton.Config({"BLOCK": 64}, num_warps=2)]


@triton.autotune(configs=CONFIGS, key=["n"], do_bench=lambda fn, quantiles=None: 1.0)
@triton.jit
def axpb_kernel(x, b, out, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    tl.store(out + offsets, 2 * tl.load(x + offsets, mask=inside) + tl.load(b + offsets, mask=inside), mask=inside)


def axpb_triton(x, b):
    out = torch.empty_like(x)
    axpb_kernel[lambda meta: (triton.cdiv(x.numel(), meta["BLOCK"]),)](x, b, out, x.numel())
    return out


def test_the_chosen_configuration_is_recorded_by_kernel_name():
    x = torch.randn(33)
    with chosen_configs() as chosen:
        axpb_triton(x, x)
    assert set(chosen) == {"axpb_kernel"}
    assert chosen["axpb_kernel"]["BLOCK"] in (16, 64)
    assert {"num_warps", "num_stages"} <= set(chosen["axpb_kernel"])
    # Outside the block nothing is recorded any more.
    axpb_triton(x, x)
    assert list(chosen) == ["axpb_kernel"]


def test_rows_carry_the_autotune_choice_per_replicate():
    record = runner.run([toy_benchmark([Impl("triton", axpb_triton)])], quick_config())
    rows = {row["impl"]: row for row in record["rows"]}
    assert rows["triton"]["status"] == "ok", rows["triton"]["reason"]
    [choice] = rows["triton"]["autotune"]
    assert choice["axpb_kernel"]["BLOCK"] in (16, 64)
    assert rows["reference"]["autotune"] == [{}]
    assert rows["triton"]["calls_per_sample"] == [1]
