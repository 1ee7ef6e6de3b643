"""Models and training loops that use the kernels."""
