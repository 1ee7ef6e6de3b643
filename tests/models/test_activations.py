import json

import numpy as np
import pytest
import torch

from menagerie.models.activation_sources import load_model, python_docs_paragraphs, tensor_batches, text_batches
from menagerie.models.activations import ActivationDataset, ActivationDatasetError, collect_activations


class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = torch.nn.Linear(6, 5)
        self.second = torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def build_two_layers():
    return TwoLayers()


def test_any_module_any_layer_rows_and_manifest(tmp_path):
    model = TwoLayers()
    inputs = torch.randn(4, 7, 6)  # (batch, positions, features): every position is a row
    manifest = collect_activations(
        model, "first", [inputs[:3], inputs[3:]], tmp_path, model_name="two-layers", shard_rows=10
    )
    expected = model.first(inputs).reshape(-1, 5)
    assert manifest.count == 28 and manifest.dim == 5 and [s["rows"] for s in manifest.shards] == [10, 10, 8]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["layer"] == "first" and on_disk["count"] == 28 and on_disk["dtype"] == "float32"
    dataset = ActivationDataset(tmp_path)
    stored = np.concatenate([np.load(tmp_path / s["file"]) for s in manifest.shards])
    np.testing.assert_allclose(stored, expected.detach().numpy(), rtol=1e-6, atol=1e-6)
    assert len(dataset) == 28


def test_batches_are_shuffled_and_cover_every_row_once_per_epoch(tmp_path):
    rows = torch.arange(50, dtype=torch.float32)[:, None].repeat(1, 2)
    collect_activations(
        torch.nn.Sequential(torch.nn.Identity()), "0", [rows], tmp_path, model_name="identity", shard_rows=16
    )
    dataset = ActivationDataset(tmp_path)
    epoch = list(dataset.batches(8, seed=1, epochs=1))
    seen = torch.cat(epoch)[:, 0]
    assert sorted(seen.tolist()) == list(range(50))
    assert seen.tolist() != list(range(50))
    assert [len(batch) for batch in epoch] == [8] * 6 + [2]
    assert torch.equal(torch.cat(list(dataset.batches(8, seed=1, epochs=1))), torch.cat(epoch))


def test_padding_positions_are_dropped_through_the_attention_mask(tmp_path):
    model, tokenizer = load_model("minilm")
    texts = python_docs_paragraphs()[:3]
    manifest = collect_activations(
        model, "encoder.layer.1", text_batches(tokenizer, texts, 3, 64), tmp_path, model_name="minilm"
    )
    tokens = sum(len(tokenizer(text, truncation=True, max_length=64)["input_ids"]) for text in texts)
    assert manifest.count == tokens and manifest.dim == 384


def test_interrupted_write_is_not_a_dataset(tmp_path):
    def batches_that_fail():
        yield torch.randn(40, 6)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect_activations(TwoLayers(), "first", batches_that_fail(), tmp_path, model_name="m", shard_rows=16)
    assert list(tmp_path.glob("shard_*.npy")) and not (tmp_path / "manifest.json").exists()
    with pytest.raises(ActivationDatasetError, match="incomplete"):
        ActivationDataset(tmp_path)


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="layer 'third' is not a submodule"):
        collect_activations(TwoLayers(), "third", [torch.randn(2, 6)], tmp_path / "a", model_name="m")
    with pytest.raises(ValueError, match="no activations"):
        collect_activations(TwoLayers(), "first", [], tmp_path / "b", model_name="m")
    collect_activations(TwoLayers(), "first", [torch.randn(2, 6)], tmp_path / "c", model_name="m")
    with pytest.raises(FileExistsError, match="already holds"):
        collect_activations(TwoLayers(), "first", [torch.randn(2, 6)], tmp_path / "c", model_name="m")
    with pytest.raises(ActivationDatasetError, match="no such activation folder"):
        ActivationDataset(tmp_path / "missing")
    (tmp_path / "c" / "shard_00000.npy").write_bytes(b"not numpy")
    with pytest.raises(ActivationDatasetError, match="unreadable shard"):
        ActivationDataset(tmp_path / "c")
    with pytest.raises(ValueError, match="expected 'minilm' or 'package.module:function'"):
        load_model("no-colon")
    with pytest.raises(ValueError, match="cannot load"):
        load_model("tests.models.test_activations:missing")


def test_user_model_by_import_path_and_tensor_inputs(tmp_path):
    model, tokenizer = load_model("tests.models.test_activations:build_two_layers")
    assert isinstance(model, TwoLayers) and tokenizer is None
    torch.save(torch.randn(9, 6), tmp_path / "inputs.pt")
    batches = list(tensor_batches(tmp_path / "inputs.pt", 4))
    assert [len(batch) for batch in batches] == [4, 4, 1]


def test_shipped_text_is_real_prose():
    paragraphs = python_docs_paragraphs()
    assert len(paragraphs) > 500 and all(len(text.split()) >= 12 for text in paragraphs)


def test_command_line_writes_activations_and_trains_an_sae(tmp_path):
    import json as json_module

    from menagerie.harness.cli import main

    torch.save(torch.randn(40, 3, 6), tmp_path / "inputs.pt")
    acts = tmp_path / "acts"
    assert (
        main(
            [
                "activations",
                "--model",
                "tests.models.test_activations:build_two_layers",
                "--layer",
                "first",
                "--tensors",
                str(tmp_path / "inputs.pt"),
                "--out",
                str(acts),
                "--batch-size",
                "16",
            ]
        )
        == 0
    )
    assert ActivationDataset(acts).manifest.count == 120
    assert (
        main(
            [
                "train",
                "sae",
                "--activations",
                str(acts),
                "--latents",
                "16",
                "--k",
                "2",
                "--steps",
                "3",
                "--batch-size",
                "32",
                "--warmup-steps",
                "1",
                "--out",
                str(tmp_path / "runs"),
            ]
        )
        == 0
    )
    (record_path,) = (tmp_path / "runs").glob("*.json")
    record = json_module.loads(record_path.read_text())
    assert record["kind"] == "sae_training" and record["provenance"]["git"]
    assert record["result"]["steps"] == 3 and len(record["result"]["history"]) == 3
    assert record["dataset"]["layer"] == "first" and record["result"]["tokens_per_s"] > 0


def test_command_line_bad_inputs_exit_2(tmp_path):
    from menagerie.harness.cli import main

    assert main(["train", "sae", "--activations", str(tmp_path / "missing")]) == 2
    assert (
        main(["activations", "--model", "tests.models.test_activations:build_two_layers", "--out", str(tmp_path / "a")])
        == 2
    )  # no tokenizer and no --tensors
    assert main(["activations", "--model", "nonsense", "--out", str(tmp_path / "b")]) == 2
