"""Variant alternative — attention: ``torch.einsum`` for the scores and the weighted sum, Q scaled
before the product, masking with ``masked_fill(mask.logical_not(), -inf)``, heads split with
``reshape`` + ``permute(0, 2, 1, 3)``; ``attn_weights`` kept as they are (not detached)."""

import math

import torch
from torch import nn


def scaled_dot_product_attention(query, key, value, mask=None, dropout=None):
    scores = torch.einsum("...qd,...kd->...qk", query / math.sqrt(query.shape[-1]), key)
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout is not None:
        weights = dropout(weights)
    return torch.einsum("...qk,...kd->...qd", weights, value), weights


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, dropout=0.1):
        super().__init__()
        if d_model % num_heads:
            raise ValueError("d_model must be a multiple of num_heads")
        self.h = num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.dropout = nn.Dropout(p=dropout)
        self.attn_weights = None

    def forward(self, query, key, value, mask=None):
        b, t_q, d = query.shape

        def heads(x):
            return x.reshape(b, x.shape[1], self.h, d // self.h).permute(0, 2, 1, 3)

        q, k, v = heads(self.w_q(query)), heads(self.w_k(key)), heads(self.w_v(value))
        out, weights = scaled_dot_product_attention(q, k, v, None if mask is None else mask[:, None], self.dropout)
        self.attn_weights = weights
        return self.w_o(out.permute(0, 2, 1, 3).reshape(b, t_q, d))
