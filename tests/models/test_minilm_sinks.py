import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from menagerie.models import minilm_sinks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm():
    return minilm_sinks.load_minilm()


def test_text_is_real_prose_from_the_standard_library():
    paragraphs = minilm_sinks.stdlib_paragraphs(8)
    assert len(paragraphs) == 8 and len(set(paragraphs)) == 8
    assert all(len(text.split()) >= 40 and ". " in text for text in paragraphs)


def test_triton_kernel_inside_the_model_matches_the_reference(minilm):
    from transformers import AttentionInterface

    tokenizer, model = minilm
    text = minilm_sinks.stdlib_paragraphs(1)
    embeddings = {}
    for backend, kernel in minilm_sinks.BACKENDS.items():
        AttentionInterface.register(minilm_sinks.ATTENTION_NAME, minilm_sinks._windowed(kernel, window=4, sinks=1))
        model.set_attn_implementation(minilm_sinks.ATTENTION_NAME)
        embeddings[backend] = minilm_sinks.embed(model, tokenizer, text, max_tokens=48)
        model.set_attn_implementation("eager")
    torch.testing.assert_close(embeddings["triton"], embeddings["reference"], atol=1e-5, rtol=1e-5)


def test_window_covering_the_sentence_reproduces_the_dense_model():
    study = minilm_sinks.run_study(windows=(1, 512), sinks=(0, 1), texts=3, max_tokens=64, backend="reference")
    for key in ("sinks=0", "sinks=1"):
        assert study.cosine_mean[key][1] == pytest.approx(1.0, abs=1e-5)
        assert all(-1.0 <= value <= 1.0 + 1e-6 for value in study.cosine_mean[key] + study.cosine_min[key])
        assert study.cosine_min[key][0] <= study.cosine_mean[key][0] < 1.0  # a window of 1 changes the embedding
    assert len(study.first_token_share) == 6  # MiniLM-L6 has six layers
    assert all(0.0 <= share <= 1.0 for share in study.first_token_share)
    assert 0.0 < study.uniform_share < 1.0


def test_padded_batches_are_refused(minilm):
    attention = minilm_sinks._windowed(minilm_sinks.BACKENDS["reference"], window=2, sinks=1)
    q = torch.randn(1, 2, 5, 16)
    padding = torch.zeros(1, 1, 5, 5)
    padding[..., -1] = float("-inf")
    with pytest.raises(ValueError, match="unpadded"):
        attention(None, q, q, q, padding)


def test_bad_study_arguments():
    with pytest.raises(ValueError, match="backend"):
        minilm_sinks.run_study(backend="cuda-magic")
    with pytest.raises(ValueError, match="windows"):
        minilm_sinks.run_study(windows=(-1,))


def test_study_command_writes_a_record_and_a_plot(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "menagerie.harness.cli", "study", "sinks", "--texts", "2", "--windows", "2,512",
         "--max-tokens", "48", "--backend", "reference", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"})
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "sinks.json").read_text())
    assert record["study"]["windows"] == [2, 512] and record["provenance"]["torch"]
    assert (tmp_path / "sinks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sinks=1 mean" in done.stdout
