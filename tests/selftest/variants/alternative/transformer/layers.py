"""Variant alternative — layers calling the attention with ``mask=`` by keyword, the sublayers
wrapped in lambdas with other argument names."""

from torch import nn

from .attention import MultiHeadAttention
from .feed_forward import PositionwiseFeedForward
from .normalization import AddNorm


class EncoderLayer(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, dropout)
        self.add_norm1, self.add_norm2 = AddNorm(d_model, dropout), AddNorm(d_model, dropout)

    def forward(self, x, src_mask):
        attended = self.add_norm1(x, lambda y: self.self_attn(y, y, y, mask=src_mask))
        return self.add_norm2(attended, lambda y: self.feed_forward(y))


class DecoderLayer(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, dropout)
        self.add_norm1 = AddNorm(d_model, dropout)
        self.add_norm2 = AddNorm(d_model, dropout)
        self.add_norm3 = AddNorm(d_model, dropout)

    def forward(self, x, memory, src_mask, tgt_mask):
        y = self.add_norm1(x, lambda t: self.self_attn(t, t, t, mask=tgt_mask))
        y = self.add_norm2(y, lambda t: self.cross_attn(t, memory, memory, mask=src_mask))
        return self.add_norm3(y, self.feed_forward)
