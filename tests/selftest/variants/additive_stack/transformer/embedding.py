"""Variant additive_stack — positional encoding as **stacked sin/cos reshaped**:
``torch.stack([sin, cos], -1).flatten(-2)[:, :d_model]`` from ``torch.outer(positions,
inverse frequencies)``; the frequencies as ``1 / 10000 ** (2i / d_model)``."""

import math

import torch
from torch import nn


class TokenEmbedding(nn.Module):
    def __init__(self, vocab_size, d_model, padding_idx=None):
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings=vocab_size, embedding_dim=d_model, padding_idx=padding_idx)
        self.d_model = d_model

    def forward(self, tokens):
        return math.sqrt(self.d_model) * self.embedding(tokens)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, max_len=5000, dropout=0.1):
        super().__init__()
        pairs = (d_model + 1) // 2
        inv_freq = 1.0 / 10000 ** (2 * torch.arange(pairs, dtype=torch.float64) / d_model)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)  # (max_len, pairs)
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)[:, :d_model]
        self.register_buffer("pe", table.to(torch.get_default_dtype()))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        length = x.shape[-2]
        if length > self.pe.shape[0]:
            raise ValueError(f"{length} positions, but the table has only max_len={self.pe.shape[0]}")
        return self.dropout(x + self.pe[:length].to(x.dtype))
