"""Variant einsum_topk — attention styles: ``torch.einsum`` everywhere (the projections with
the head split folded into the weight, the scores, the weighted sum, the output projection
that merges the heads) and masking with ``masked_fill(~mask, -inf)``.

The ``nn.Linear`` modules are kept for their parameters (state-dict names ``w_q.weight``, …)
but their weights are contracted with einsum instead of calling them.
"""

import math

import torch
from torch import nn


def scaled_dot_product_attention(query, key, value, mask=None, dropout=None):
    scores = torch.einsum("...qd,...kd->...qk", query, key) / math.sqrt(query.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # every row keeps one visible key
    weights = torch.softmax(scores, dim=-1)
    if dropout is not None:
        weights = dropout(weights)
    return torch.einsum("...qk,...kv->...qv", weights, value), weights


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, dropout=0.1):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} does not divide d_model={d_model}")
        self.h, self.d_k = num_heads, d_model // num_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.attn_weights = None

    def _heads(self, x, linear):
        # Output feature h * d_k + j of the projection is feature j of head h.
        weight = linear.weight.view(self.h, self.d_k, -1)  # (h, d_k, d_model)
        bias = linear.bias.view(self.h, 1, self.d_k)
        return torch.einsum("btm,hkm->bhtk", x, weight) + bias  # (B, h, T, d_k)

    def forward(self, query, key, value, mask=None):
        q = self._heads(query, self.w_q)
        k = self._heads(key, self.w_k)
        v = self._heads(value, self.w_v)
        out, weights = scaled_dot_product_attention(q, k, v, None if mask is None else mask.unsqueeze(1), self.dropout)
        self.attn_weights = weights.detach()
        w_o = self.w_o.weight.view(-1, self.h, self.d_k)  # (d_model, h, d_k): merges the heads
        return torch.einsum("bhqk,mhk->bqm", out, w_o) + self.w_o.bias
