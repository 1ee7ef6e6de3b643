"""Input checks shared by the kernel families, so that a bad argument fails before any launch.

Each check raises a ``TypeError`` (not a tensor, or a dtype the kernel does not take) or a
``ValueError`` (another device) whose message starts with the argument's name:
``"x: expected float32, float16 or bfloat16, got torch.float64"``. The shape rules are each
family's own and stay in its file.
"""

import torch

FLOATING = (torch.float32, torch.float16, torch.bfloat16)


def _listed(dtypes: tuple[torch.dtype, ...]) -> str:
    names = [str(dtype).removeprefix("torch.") for dtype in dtypes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_tensor(name: str, value) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")


def check_dtype(name: str, value, dtypes: tuple[torch.dtype, ...] = FLOATING) -> None:
    """``value`` is a tensor of one of ``dtypes``."""
    check_tensor(name, value)
    if value.dtype not in dtypes:
        raise TypeError(f"{name}: expected {_listed(dtypes)}, got {value.dtype}")


def check_device(name: str, value: torch.Tensor, reference_name: str, reference: torch.Tensor) -> None:
    """``value`` lives where ``reference`` does."""
    if value.device != reference.device:
        raise ValueError(f"{name}: expected the device of {reference_name} ({reference.device}), got {value.device}")


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s precision: float32 inputs multiply in IEEE float32 (as torch.matmul does by
    default), not TF32; the halves ignore it."""
    return "ieee" if dtype == torch.float32 else "tf32"
