"""Element-wise kernels: the harness's built-in end-to-end benchmark."""

from menagerie.kernels.elementwise.bias_gelu import bias_gelu
from menagerie.kernels.elementwise.reference import bias_gelu_reference

__all__ = ["bias_gelu", "bias_gelu_reference"]
