"""After timing: is the implementation still right, and did it leave its inputs alone?

KernelBench guards against kernels that cache results or write to their inputs, and the GPU MODE
leaderboard checks the result of every timed repetition. Here each implementation is timed on its own
copy of the first seed's inputs, and after timing its row gets

- ``mutates-inputs`` when the tensors it was timed on (its gradient leaves included) differ from the
  pristine inputs, bit for bit (NaN equal to NaN);
- ``wrong-after-timing`` when, with those same tensors refilled in place with another seed's values (the
  same pointers, new data), one more call misses the reference's outputs for those values at the
  benchmark's tolerance: a result cached by pointer, or state left over from timing. Where the other
  seed's tensors differ in shape or dtype (a packed batch of other lengths), the call takes them as
  they are, at new pointers.

Both fail the gate. The cost is one more call of each timed implementation (a forward and a backward
in ``bwd`` mode) and one of the reference per case.
"""

from __future__ import annotations

import torch

MUTATES_INPUTS = "mutates-inputs"
WRONG_AFTER_TIMING = "wrong-after-timing"


def cloned(inputs: dict) -> dict:
    """A copy of ``inputs`` whose tensors are new allocations; other values are shared. Arguments that are one
    tensor (the same offsets for queries and keys) stay one."""
    copies = {}
    for value in inputs.values():
        if isinstance(value, torch.Tensor) and id(value) not in copies:
            copies[id(value)] = value.clone()
    return {name: copies.get(id(value), value) for name, value in inputs.items()}


def _same(seen: torch.Tensor, pristine: torch.Tensor) -> bool:
    seen = seen.detach()
    if seen.shape != pristine.shape or seen.dtype != pristine.dtype:
        return False
    if seen.is_floating_point() or seen.is_complex():
        return bool(((seen == pristine) | (seen.isnan() & pristine.isnan())).all())
    return torch.equal(seen, pristine)


def mutated_inputs(seen: dict, pristine: dict) -> list[str]:
    """The names of the tensors in ``seen`` that no longer equal their ``pristine`` originals."""
    return [
        name for name, value in seen.items() if isinstance(value, torch.Tensor) and not _same(value, pristine[name])
    ]


def refill(seen: dict, fresh: dict) -> bool:
    """Copies ``fresh``'s tensor values into ``seen``'s tensors, in place; False (and nothing copied) when any
    of them differs in shape, dtype or device, or another argument differs (a maximum length, say)."""
    pairs = [(value, fresh[name]) for name, value in seen.items() if isinstance(value, torch.Tensor)]
    if any((old.shape, old.dtype, old.device) != (new.shape, new.dtype, new.device) for old, new in pairs):
        return False
    if any(not isinstance(value, torch.Tensor) and value != fresh[name] for name, value in seen.items()):
        return False
    with torch.no_grad():
        for old, new in pairs:
            old.copy_(new)
    return True
