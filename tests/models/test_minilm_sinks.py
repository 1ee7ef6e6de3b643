import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from menagerie.models import minilm_sinks
from menagerie.models.commands import study as study_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm():
    return minilm_sinks.load_minilm()


@pytest.fixture(scope="module")
def small_study():
    # A window that covers every sentence, and one that does not; a dense-layer set of every layer.
    return minilm_sinks.run_study(
        windows=(1, 512),
        sinks=("none", "cls", "cls+sep+punct"),
        dense_layer_sets=((), (0, 1, 2, 3, 4, 5)),
        texts=3,
        corpus=12,
        max_tokens=64,
        backend="reference",
        boots=200,
    )


def test_text_is_real_prose_from_the_standard_library():
    paragraphs = minilm_sinks.stdlib_paragraphs(None)
    assert len(paragraphs) >= 300 and len(set(paragraphs)) == len(paragraphs)  # "several hundred" for retrieval
    assert all(len(text.split()) >= 30 and ". " in text for text in paragraphs)
    query, document = minilm_sinks.query_and_document(paragraphs[0])
    assert query.endswith((".", "!", "?")) and paragraphs[0].startswith(query) and paragraphs[0].endswith(document)
    assert len(query) + len(document) < len(paragraphs[0])


def test_token_classes(minilm):
    tokenizer, _ = minilm
    ids = tokenizer("Hello, world. Yes!")["input_ids"]
    assert minilm_sinks.token_classes(tokenizer, ids) == [
        "[CLS]",
        "other",
        "punctuation",
        "other",
        "punctuation",
        "other",
        "punctuation",
        "[SEP]",
    ]


def test_triton_kernel_inside_the_model_matches_the_reference(minilm):
    tokenizer, model = minilm
    text = minilm_sinks.stdlib_paragraphs(1)
    configuration = minilm_sinks.Configuration(window=4, sinks="cls+sep")  # leading and trailing sinks
    embeddings = {
        backend: minilm_sinks.embed(
            model, tokenizer, text, 48, minilm_sinks.WindowedAttention(model, configuration, kernel)
        )
        for backend, kernel in minilm_sinks.BACKENDS.items()
    }
    torch.testing.assert_close(embeddings["triton"], embeddings["reference"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sink_set, sinks, end_sinks", [("cls", 1, 0), ("cls+sep", 1, 1)])
def test_the_mask_path_agrees_with_the_kernel_on_leading_and_trailing_sinks(minilm, sink_set, sinks, end_sinks):
    # The boolean-mask path (punctuation sinks) with the first key, or the first and the last, as sinks is the
    # kernel's sinks=1 (and end_sinks=1), the path that `cls` and `cls+sep` take.
    _, model = minilm
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 13, 16, generator=generator) for _ in range(3))
    attention = minilm_sinks.WindowedAttention(
        model, minilm_sinks.Configuration(3, "cls+sep+punct"), minilm_sinks.BACKENDS["reference"]
    )
    attention.sink_keys = (torch.arange(13) < sinks) | (torch.arange(13) >= 13 - end_sinks)
    through_mask, _ = attention(None, q, k, v, None, scaling=0.25)
    kernel_path = minilm_sinks.WindowedAttention(
        model, minilm_sinks.Configuration(3, sink_set), minilm_sinks.BACKENDS["reference"]
    )
    kernel_path.sink_keys = attention.sink_keys
    through_kernel, _ = kernel_path(None, q, k, v, None, scaling=0.25)
    assert kernel_path.configuration.path == "kernel"
    torch.testing.assert_close(through_mask, through_kernel, atol=1e-6, rtol=1e-5)


def test_the_kernel_path_refuses_sinks_it_cannot_express(minilm):
    _, model = minilm
    attention = minilm_sinks.WindowedAttention(
        model, minilm_sinks.Configuration(3, "cls+sep"), minilm_sinks.BACKENDS["reference"]
    )
    attention.sink_keys = torch.arange(13) == 0  # no trailing [SEP], as a truncation that dropped it would give
    q = torch.randn(1, 2, 13, 16)
    with pytest.raises(ValueError, match="not the first 1 and last 1 keys"):
        attention(None, q, q, q, None)


def test_attention_shares_by_class_sum_to_one(small_study):
    shares = np.array(small_study.class_shares)
    assert shares.shape == (6, 12, 4)  # MiniLM-L6: six layers of twelve heads; four classes
    np.testing.assert_allclose(shares.sum(axis=-1), 1.0, atol=1e-5)
    assert sum(small_study.uniform_shares.values()) == pytest.approx(1.0)
    assert 0 < small_study.uniform_shares["[CLS]"] == pytest.approx(small_study.uniform_shares["[SEP]"])


def test_covering_windows_and_all_dense_layers_reproduce_the_dense_model(small_study):
    dense = small_study.dense_retrieval
    for row in small_study.rows:
        if row["window"] == 512 or len(row["dense_layers"]) == 6:
            assert row["cosine_mean"] == pytest.approx(1.0, abs=1e-5), row
            assert row["retrieval"]["mrr"][0] == pytest.approx(dense["mrr"][0], abs=1e-9)
            assert all(row["within_dense_ci"].values())
        else:
            assert row["cosine_min"] <= row["cosine_mean"] < 1.0  # a window of 1 changes the embedding
        for low_mean_high in row["retrieval"].values():
            assert low_mean_high[1] <= low_mean_high[0] <= low_mean_high[2]
    assert {row["path"] for row in small_study.rows} == {"kernel", "mask"}
    assert len(small_study.rows) == 2 * 3 * 2


def test_retrieval_metrics_on_known_ranks():
    queries = torch.eye(3)
    documents = torch.tensor([[1.0, 0, 0], [1.0, 0.1, 0], [0, 0, 1.0]])  # query 0 ties documents 0 and 1
    ranks = minilm_sinks.ranks_of_true_documents(queries, documents)
    assert ranks.tolist() == [2, 1, 1]  # a tie counts against the query
    values = minilm_sinks.metric_values(np.array([1, 2, 12]))
    assert values["recall@1"].tolist() == [1, 0, 0] and values["recall@10"].tolist() == [1, 1, 0]
    assert values["mrr"].tolist() == pytest.approx([1, 0.5, 1 / 12])
    interval = minilm_sinks.bootstrap({"mrr": np.array([1.0] * 5 + [0.0] * 5)}, boots=2000, seed=0)["mrr"]
    assert interval[0] == 0.5 and 0.1 < interval[1] < 0.5 < interval[2] < 0.9


def test_bad_study_arguments():
    with pytest.raises(ValueError, match="backend"):
        minilm_sinks.run_study(backend="cuda-magic")
    with pytest.raises(ValueError, match="windows"):
        minilm_sinks.run_study(windows=(-1,))
    with pytest.raises(ValueError, match="sink sets"):
        minilm_sinks.run_study(sinks=("everything",))
    with pytest.raises(ValueError, match="dense layers"):
        minilm_sinks.run_study(dense_layer_sets=((9,),), texts=1, corpus=2)


def test_the_command_names_every_sink_set():
    assert study_command.SINK_SET_NAMES == tuple(minilm_sinks.SINK_SETS)


def test_padded_batches_are_refused(minilm):
    _, model = minilm
    attention = minilm_sinks.WindowedAttention(
        model, minilm_sinks.Configuration(2, "cls"), minilm_sinks.BACKENDS["reference"]
    )
    q = torch.randn(1, 2, 5, 16)
    padding = torch.zeros(1, 1, 5, 5)
    padding[..., -1] = float("-inf")
    with pytest.raises(ValueError, match="unpadded"):
        attention(None, q, q, q, padding)


def test_study_command_writes_a_record_and_a_plot(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "menagerie.harness.cli",
            "study",
            "sinks",
            "--texts",
            "2",
            "--corpus",
            "6",
            "--windows",
            "2,512",
            "--sinks",
            "cls,cls+sep",
            "--dense-layers",
            "0",
            "--boots",
            "100",
            "--max-tokens",
            "48",
            "--backend",
            "reference",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "sinks.json").read_text())
    assert record["study"]["windows"] == [2, 512] and record["provenance"]["torch"]
    assert record["study"]["dense_layer_sets"] == [[], [0]] and len(record["study"]["rows"]) == 2 * 2 * 2
    assert (tmp_path / "sinks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "within dense's noise" in done.stdout and "cls+sep" in done.stdout
