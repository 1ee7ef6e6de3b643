"""TopK sparse-autoencoder kernels: fused encoder + top-k, sparse decoder (optionally fused with
the MSE), sparse backward; and the plain-PyTorch reference and baselines beside them."""

from menagerie.kernels.sae.decode import sparse_decode, sparse_decode_mse
from menagerie.kernels.sae.encode import topk_encode
from menagerie.kernels.sae.reference import decode_dense, decode_embedding_bag, topk_encode_dense, topk_encode_reference

__all__ = [
    "decode_dense",
    "decode_embedding_bag",
    "sparse_decode",
    "sparse_decode_mse",
    "topk_encode",
    "topk_encode_dense",
    "topk_encode_reference",
]
