"""Variant einsum_topk — positional encoding with ``torch.pow(10000, -2i/d_model)`` in float64,
written into the even and odd columns by slicing; the token scale as a stored float."""

import math

import torch
from torch import nn


class TokenEmbedding(nn.Module):
    def __init__(self, vocab_size, d_model, padding_idx=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.scale = math.sqrt(d_model)

    def forward(self, tokens):
        return self.embedding(tokens).mul(self.scale)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, max_len=5000, dropout=0.1):
        super().__init__()
        positions = torch.arange(max_len, dtype=torch.float64).unsqueeze(-1)
        inv_freq = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        angles = positions * inv_freq  # (max_len, ceil(d_model / 2))
        pe = torch.empty(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angles)
        pe[:, 1::2] = torch.cos(angles)[:, : d_model // 2]
        self.register_buffer("pe", pe.float())
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        if x.size(1) > len(self.pe):
            raise ValueError(f"input of length {x.size(1)} is longer than max_len={len(self.pe)}")
        return self.dropout(x + self.pe[: x.size(1)].to(dtype=x.dtype))
