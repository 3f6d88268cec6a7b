"""Variant where_loop — attention styles: masking with ``torch.where(mask, scores, finfo.min)``,
scaling the scores by ``d_k ** -0.5`` with ``matmul`` and ``.mT``, heads split with
``unflatten(-1, (h, d_k))`` + ``permute`` and merged with ``permute`` + ``flatten(-2)``."""

import torch
from torch import nn


def scaled_dot_product_attention(query, key, value, mask=None, dropout=None):
    scores = torch.matmul(query, key.mT) * query.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
    weights = scores.softmax(-1)
    if dropout is not None:
        weights = dropout(weights)
    return torch.matmul(weights, value), weights


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, dropout=0.1):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"cannot split d_model={d_model} into {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.attn_weights = None

    def _split(self, x):  # (B, T, d_model) -> (B, h, T, d_k)
        return x.unflatten(-1, (self.num_heads, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, query, key, value, mask=None):
        q = self._split(self.w_q(query))
        k = self._split(self.w_k(key))
        v = self._split(self.w_v(value))
        if mask is not None:
            mask = mask[:, None, :, :]
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout=self.dropout)
        self.attn_weights = weights.detach()
        return self.w_o(out.permute(0, 2, 1, 3).flatten(-2))
