import torch

from menagerie.benchmarks.sae import CASES, make_encoder_inputs, selection_view
from menagerie.harness.accuracy import check_outputs
from menagerie.harness.registry import Tolerance
from menagerie.kernels.sae import topk_encode_reference

TOLERANCE = Tolerance(atol=0.0, rtol=1e-6, atol_of_max=1e-6)


def encoder_outputs():
    inputs = make_encoder_inputs(CASES["tiny"][0], torch.float64, torch.device("cpu"), seed=0)
    values, indices = topk_encode_reference(**inputs)
    return inputs, values, indices


def test_a_tie_taken_the_other_way_passes():
    inputs, _, indices = encoder_outputs()
    first, second = indices[0, 0], indices[0, 1]
    pre = (inputs["x"][0] - inputs["b_dec"]) @ inputs["W_enc"] + inputs["b_enc"]
    inputs["b_enc"][second] += pre[first] - pre[second]  # row 0's two best latents now tie exactly
    values, indices = topk_encode_reference(**inputs)
    assert values[0, 0] == values[0, 1]
    swapped = indices.clone()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    expected = selection_view({"out0": values, "out1": indices}, inputs)
    assert check_outputs(selection_view({"out0": values, "out1": swapped}, inputs), expected, TOLERANCE, [0]).passed


def test_a_wrong_index_fails():
    inputs, values, indices = encoder_outputs()
    expected = selection_view({"out0": values, "out1": indices}, inputs)
    wrong = indices.clone()
    wrong[3, 2] = next(m for m in range(inputs["W_enc"].shape[1]) if m not in indices[3].tolist())
    record = check_outputs(selection_view({"out0": values, "out1": wrong}, inputs), expected, TOLERANCE, [0])
    assert not record.passed and record.worst_output == "chosen_pre_activations"
