"""Variant alternative — positional encoding with ``torch.pow`` in float32 over every feature
(the pair index ``j - j % 2``) and ``torch.where`` choosing sin or cos; the token scale stored
as a float and multiplied on the left."""

import math

import torch
from torch import nn


class TokenEmbedding(nn.Module):
    def __init__(self, vocab_size, d_model, padding_idx=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.scale = math.sqrt(d_model)

    def forward(self, tokens):
        return self.scale * self.embedding(tokens)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, max_len=5000, dropout=0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        pos = torch.arange(max_len).float()[:, None]
        feature = torch.arange(d_model)
        freq = torch.pow(10000.0, -(feature - feature % 2).float() / d_model)  # pairs share 2i
        angles = pos * freq[None, :]
        pe = torch.where(feature % 2 == 0, torch.sin(angles), torch.cos(angles))
        self.register_buffer("pe", pe)

    def forward(self, x):
        if x.shape[1] > self.pe.shape[0]:
            raise ValueError("sequence longer than max_len")
        return self.dropout(x + self.pe[: x.shape[1]].type_as(x))
