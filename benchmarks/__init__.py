"""One module per family, each declaring its benchmarks to the harness registry."""

import torch


def interpreted_bf16(case, device, dtype, mode):
    """Skip reason for Triton code in bf16 on the CPU, where Triton's interpreter computes bf16 wrongly."""
    if device.type == "cpu" and dtype == torch.bfloat16:
        return "Triton's CPU interpreter has no correct bf16 arithmetic; bf16 is checked on a GPU"
    return None
