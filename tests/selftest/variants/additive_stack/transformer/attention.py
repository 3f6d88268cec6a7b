"""Variant additive_stack — attention styles: an **additive float mask**
``(1 - mask.to(dtype)) * -1e9`` added to the scores (the BERT convention), Q pre-scaled by
1/√d_k before the product with ``key.transpose(-1, -2)``, heads split with
``torch.stack(x.split(d_k, -1), dim=1)`` and merged with ``torch.cat(out.unbind(1), -1)``."""

import math

import torch
from torch import nn


def scaled_dot_product_attention(query, key, value, mask=None, dropout=None):
    scores = (query / math.sqrt(query.size(-1))) @ key.transpose(-1, -2)
    if mask is not None:
        scores = scores + (1.0 - mask.to(scores.dtype)) * -1e9
    weights = torch.softmax(scores, dim=-1)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ value, weights


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, dropout=0.1):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError("d_model must be divisible by num_heads")
        self.d_k = d_model // num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = [nn.Linear(d_model, d_model) for _ in range(4)]
        self.dropout = nn.Dropout(dropout)
        self.attn_weights = None

    def forward(self, query, key, value, mask=None):
        def split(x):  # (B, T, d_model) -> (B, h, T, d_k)
            return torch.stack(x.split(self.d_k, dim=-1), dim=1)

        out, weights = scaled_dot_product_attention(
            split(self.w_q(query)),
            split(self.w_k(key)),
            split(self.w_v(value)),
            mask if mask is None else mask.unsqueeze(-3),
            self.dropout,
        )
        self.attn_weights = weights.detach()
        return self.w_o(torch.cat(out.unbind(dim=1), dim=-1))
