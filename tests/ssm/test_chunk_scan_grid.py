"""The meaning of mamba-ssm's chunk-scan test grid, rebuilt as products of small factor lists.

mamba-ssm tests ``mamba_chunk_scan_combined`` over chunk sizes, numbers of groups, D (absent,
per head, per channel), z, dt_bias, dt_softplus, initial states and returned final states, at
sequence lengths that are not a multiple of the chunk. Each test here takes one slice of that
space as a full product, at tiny sizes (CPU interpreter), and compares the Triton scan's output,
final states and every gradient with the float64 recurrence (``check_against_recurrence``).
"""

import pytest

from tests.ssm.helpers import check_against_recurrence, ssd_inputs


@pytest.mark.parametrize("z", [False, True])
@pytest.mark.parametrize("D", [None, "head", "channel"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("chunk_size", [16, 32])
def test_chunk_sizes_groups_D_and_z(chunk_size, groups, D, z):
    inputs = ssd_inputs(length=chunk_size + 5, heads=4, groups=groups, D=D, z=z, seed=chunk_size + groups)
    check_against_recurrence(inputs, softplus=True, chunk_size=chunk_size)


@pytest.mark.parametrize("final", [False, True])
@pytest.mark.parametrize("initial", [False, True])
@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_dt_bias_softplus_and_states(bias, softplus, initial, final):
    inputs = ssd_inputs(length=2 * 16 + 3, bias=bias, softplus=softplus, initial=initial, seed=11)
    check_against_recurrence(inputs, softplus=softplus, return_final_states=final, chunk_size=16)
