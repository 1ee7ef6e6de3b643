"""A TopK sparse autoencoder on the fused kernels, and its training loop.

``TopKSAE(dim, latents, k)`` keeps the encoder as ``(M, d)`` rows (``W_enc`` is its
transpose, so the backward gathers contiguous rows), the decoder ``W_dec`` ``(M, d)``
with unit-norm rows, initialised as the encoder's rows, and biases ``b_enc``, ``b_dec``.
Its forward returns the reconstruction MSE (fused with the decoder), the residual and
the activations.

``train_sae`` trains on an ``ActivationDataset`` with Adam and a linear LR warm-up;
``b_dec`` starts at the mean of the first batch. After each backward it removes the
gradient component along each decoder row and after each step renormalizes the rows
(the decoder-norm projection: the scale lives in the activations). It tracks, per
latent, the tokens since it last fired; a latent is dead past ``dead_after_tokens``,
and with ``auxk`` the dead latents' top ``k_aux`` reconstruct the residual (AuxK,
weighted by ``auxk_coefficient`` and by ``min(dead / k_aux, 1)``, normalized by the
residual's variance). Reported per step: MSE, FVU (residual energy over the batch's
variance around its mean), L0 (active latents per token), dead fraction, tokens/s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from menagerie.kernels.sae import sparse_decode, sparse_decode_mse, topk_encode


class TopKSAE(torch.nn.Module):
    def __init__(self, dim: int, latents: int, k: int, device=None, dtype=torch.float32, seed: int = 0):
        super().__init__()
        if not 1 <= k <= latents:
            raise ValueError(f"k: expected 1 <= k <= latents={latents}, got {k}")
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randn(latents, dim, generator=generator)
        rows /= rows.norm(dim=1, keepdim=True)
        self.k = k
        self.encoder = torch.nn.Parameter(rows.clone().to(device, dtype))
        self.W_dec = torch.nn.Parameter(rows.to(device, dtype))
        self.b_enc = torch.nn.Parameter(torch.zeros(latents, device=device, dtype=dtype))
        self.b_dec = torch.nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))

    @property
    def W_enc(self) -> torch.Tensor:
        return self.encoder.t()

    def encode(self, x: torch.Tensor, k: int | None = None, allowed: torch.Tensor | None = None):
        return topk_encode(x, self.W_enc, self.b_enc, self.b_dec, k or self.k, allowed)

    def forward(self, x: torch.Tensor):
        """``(mse, residual = recon - x, values, indices)``."""
        values, indices = self.encode(x)
        mse, residual = sparse_decode_mse(values, indices, self.W_dec, self.b_dec, x, check_index_range=False)
        return mse, residual, values, indices

    @torch.no_grad()
    def remove_gradient_along_decoder_rows(self) -> None:
        rows, grad = self.W_dec, self.W_dec.grad
        if grad is not None:
            grad -= (grad * rows).sum(dim=1, keepdim=True) * rows

    @torch.no_grad()
    def normalize_decoder_rows(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).tiny)


def auxk_loss(sae: TopKSAE, x: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor, k_aux: int) -> torch.Tensor:
    """How well the dead latents' top ``k_aux`` reconstruct the error ``x - recon``, over its variance."""
    dead_count = int(dead.sum())
    k_aux = min(k_aux, dead_count)
    values, indices = sae.encode(x, k=k_aux, allowed=dead)
    error = -residual
    guess = sparse_decode(values, indices, sae.W_dec, torch.zeros_like(sae.b_dec), check_index_range=False)
    variance = (error - error.mean(0)).pow(2).sum().clamp_min(torch.finfo(torch.float32).tiny)
    return min(dead_count / k_aux, 1.0) * (guess - error).pow(2).sum() / variance


@dataclass
class TrainConfig:
    latents: int
    k: int
    batch_size: int = 4096
    steps: int = 1000
    lr: float | None = None  # None: 2e-4 / sqrt(latents / 2**14), the scaling of Gao et al. (2024)
    warmup_steps: int = 100
    auxk: bool = True
    k_aux: int | None = None  # None: d // 2
    auxk_coefficient: float = 1 / 32
    dead_after_tokens: int = 10_000_000
    seed: int = 0

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / (self.latents / 2**14) ** 0.5


@dataclass
class TrainResult:
    config: dict
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    fvu_first: float
    fvu_final: float  # mean over the last tenth of the steps
    l0_final: float
    dead_fraction_final: float
    history: list[dict] = field(default_factory=list)


def _fvu(residual: torch.Tensor, x: torch.Tensor) -> float:
    return float(residual.float().pow(2).sum() / (x.float() - x.float().mean(0)).pow(2).sum())


def train_sae(
    dataset,
    config: TrainConfig,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    on_step: Callable[[dict], None] | None = None,
) -> tuple[TopKSAE, TrainResult]:
    """Trains a ``TopKSAE`` on ``dataset`` (an ``ActivationDataset``) for ``config.steps`` batches."""
    if config.k > config.latents:
        raise ValueError(f"k: expected at most latents={config.latents}, got {config.k}")
    torch.manual_seed(config.seed)
    sae = TopKSAE(dataset.dim, config.latents, config.k, device=device, dtype=dtype, seed=config.seed)
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.learning_rate(), eps=6.25e-10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / config.warmup_steps))
    k_aux = config.k_aux or dataset.dim // 2
    tokens_since_fired = torch.zeros(config.latents, dtype=torch.int64, device=device)
    history, tokens = [], 0
    batches = dataset.batches(config.batch_size, seed=config.seed)
    started = time.perf_counter()
    for step in range(config.steps):
        x = next(batches).to(device, dtype)
        if step == 0:
            with torch.no_grad():
                sae.b_dec.copy_(x.mean(0))
        mse, residual, values, indices = sae(x)
        dead = tokens_since_fired >= config.dead_after_tokens
        aux = auxk_loss(sae, x, residual, dead, k_aux) if config.auxk and bool(dead.any()) else None
        loss = mse if aux is None else mse + config.auxk_coefficient * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_gradient_along_decoder_rows()
        optimizer.step()
        schedule.step()
        sae.normalize_decoder_rows()

        fired = torch.zeros(config.latents, dtype=torch.bool, device=device)
        fired[indices[values > 0]] = True
        tokens_since_fired = torch.where(fired, 0, tokens_since_fired + x.shape[0])
        tokens += x.shape[0]
        record = dict(
            step=step + 1,
            tokens=tokens,
            mse=float(mse.detach()),
            fvu=_fvu(residual, x),
            l0=float((values > 0).sum(dim=1).float().mean()),
            dead_fraction=float((tokens_since_fired >= config.dead_after_tokens).float().mean()),
            auxk=None if aux is None else float(aux),
        )
        history.append(record)
        if on_step:
            on_step(record)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    tail = history[-max(1, len(history) // 10) :]
    result = TrainResult(
        config=asdict(config),
        steps=config.steps,
        tokens=tokens,
        seconds=seconds,
        tokens_per_s=tokens / seconds,
        fvu_first=history[0]["fvu"],
        fvu_final=sum(r["fvu"] for r in tail) / len(tail),
        l0_final=tail[-1]["l0"],
        dead_fraction_final=tail[-1]["dead_fraction"],
        history=history,
    )
    return sae, result
