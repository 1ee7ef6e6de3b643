"""Plain-PyTorch reference for the element-wise kernels."""

import torch
import torch.nn.functional as F


def bias_gelu_reference(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``gelu(x + bias)`` with the tanh approximation, as two separate PyTorch ops."""
    return F.gelu(x + bias, approximate="tanh")
