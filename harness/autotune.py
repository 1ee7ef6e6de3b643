"""Which configuration each Triton autotuner chose for the calls made inside a ``with`` block.

A row's time means little without the tile sizes, warps and stages it ran with, and an
autotuner's pick can change between processes, GPUs and Triton versions. ``chosen_configs``
wraps ``triton.runtime.autotuner.Autotuner.run`` (which sets ``best_config`` on every call)
for the duration of the block and records, per kernel name, the configuration of its last call:
its keyword arguments plus ``num_warps``, ``num_stages`` and ``num_ctas``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def _kernel_name(tuner) -> str:
    fn = tuner.fn
    while not hasattr(fn, "__name__") and hasattr(fn, "fn"):  # heuristics wrap the JIT function
        fn = fn.fn
    return getattr(fn, "__name__", type(fn).__name__)


def describe(config) -> dict:
    """An autotune ``Config`` as plain JSON values."""
    return {
        key: value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
        for key, value in config.all_kwargs().items()
    }


@contextlib.contextmanager
def chosen_configs() -> Iterator[dict[str, dict]]:
    """Yields a dict that fills, per kernel name, with the configuration its autotuner last chose."""
    chosen: dict[str, dict] = {}
    try:
        from triton.runtime.autotuner import Autotuner
    except ImportError:
        yield chosen
        return
    original = Autotuner.run

    def run(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        config = getattr(self, "best_config", None)
        if config is not None:
            chosen[_kernel_name(self)] = describe(config)
        return result

    Autotuner.run = run
    try:
        yield chosen
    finally:
        Autotuner.run = original
