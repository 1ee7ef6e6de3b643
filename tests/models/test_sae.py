import pytest
import torch

from menagerie.kernels.sae import decode_dense, topk_encode_reference
from menagerie.models.activation_sources import load_model, python_docs_paragraphs, text_batches
from menagerie.models.activations import ActivationDataset, collect_activations
from menagerie.models.sae import TopKSAE, TrainConfig, auxk_loss, train_sae


def test_forward_is_the_topk_sae_definition():
    sae = TopKSAE(dim=24, latents=70, k=5, seed=1)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    x = torch.randn(13, 24)
    mse, residual, values, indices = sae(x)
    params = [p.detach().double() for p in (sae.W_enc, sae.b_enc, sae.b_dec, sae.W_dec)]
    expected_values, expected_indices = topk_encode_reference(x.double(), *params[:3], 5)
    expected_residual = decode_dense(expected_values, expected_indices, params[3], params[2]) - x.double()
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(residual.double(), expected_residual, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mse.double(), expected_residual.pow(2).mean(), rtol=1e-5, atol=0)


def test_decoder_projection_keeps_rows_unit_norm_and_gradients_tangent():
    sae = TopKSAE(dim=16, latents=40, k=3)
    mse, *_ = sae(torch.randn(9, 16))
    mse.backward()
    sae.remove_gradient_along_decoder_rows()
    along = (sae.W_dec.grad * sae.W_dec).sum(dim=1)
    assert along.abs().max() < 1e-6 and sae.W_dec.grad.abs().max() > 0
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.normalize_decoder_rows()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(40))


def test_auxk_fits_the_error_with_dead_latents_only():
    sae = TopKSAE(dim=16, latents=40, k=3, seed=2)
    x = torch.randn(11, 16)
    _, residual, _, _ = sae(x)
    dead = torch.zeros(40, dtype=torch.bool)
    dead[::3] = True
    loss = auxk_loss(sae, x, residual.detach(), dead, k_aux=8)
    loss.backward()
    # Only dead latents' encoder and decoder rows receive gradient from AuxK.
    touched = (sae.W_dec.grad.abs().sum(dim=1) > 0) | (sae.encoder.grad.abs().sum(dim=1) > 0)
    assert touched.any() and not touched[~dead].any()
    values, indices = topk_encode_reference(
        x.double(),
        sae.W_enc.detach().double()[:, dead],
        sae.b_enc.detach().double()[dead],
        sae.b_dec.detach().double(),
        8,
    )
    error = -residual.detach().double()
    guess = decode_dense(values, indices, sae.W_dec.detach().double()[dead], torch.zeros(16, dtype=torch.float64))
    expected = (guess - error).pow(2).sum() / (error - error.mean(0)).pow(2).sum()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=0)


def test_bad_k_is_a_clear_error():
    with pytest.raises(ValueError, match="k: expected 1 <= k <= latents"):
        TopKSAE(dim=8, latents=10, k=11)


def test_training_on_real_minilm_activations_lowers_fvu(tmp_path):
    model, tokenizer = load_model("minilm")
    collect_activations(
        model,
        "encoder.layer.3",
        text_batches(tokenizer, python_docs_paragraphs()[:60], 20, 96),
        tmp_path,
        model_name="minilm",
        max_rows=1024,
    )
    dataset = ActivationDataset(tmp_path)
    config = TrainConfig(latents=64, k=8, batch_size=32, steps=20, warmup_steps=2, lr=4e-3, dead_after_tokens=256)
    steps = []
    _, result = train_sae(dataset, config, torch.device("cpu"), on_step=steps.append)
    assert [record["step"] for record in steps] == list(range(1, 21)) and result.tokens == 20 * 32
    assert result.fvu_final < 0.9 * result.fvu_first
    assert result.l0_final <= 8 and 0 <= result.dead_fraction_final <= 1 and result.tokens_per_s > 0
