"""Variant additive_stack — stacks built with ``copy.deepcopy`` of one layer and run with
``functools.reduce``; Xavier initialisation through ``named_parameters`` (``ndim >= 2``)."""

import copy
import functools

from torch import nn

from .embedding import PositionalEncoding, TokenEmbedding
from .layers import DecoderLayer, EncoderLayer


class Encoder(nn.Module):
    def __init__(self, num_layers, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        layer = EncoderLayer(d_model, num_heads, d_ff, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x, src_mask):
        return functools.reduce(lambda h, layer: layer(h, src_mask), self.layers, x)


class Decoder(nn.Module):
    def __init__(self, num_layers, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        layer = DecoderLayer(d_model, num_heads, d_ff, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x, memory, src_mask, tgt_mask):
        return functools.reduce(lambda h, layer: layer(h, memory, src_mask, tgt_mask), self.layers, x)


class Transformer(nn.Module):
    def __init__(
        self,
        src_vocab_size,
        tgt_vocab_size,
        d_model=512,
        num_heads=8,
        num_layers=6,
        d_ff=2048,
        dropout=0.1,
        max_len=5000,
        pad_id=0,
    ):
        super().__init__()
        self.src_embed = TokenEmbedding(src_vocab_size, d_model, padding_idx=pad_id)
        self.tgt_embed = TokenEmbedding(tgt_vocab_size, d_model, padding_idx=pad_id)
        self.positional = PositionalEncoding(d_model, max_len=max_len, dropout=dropout)
        self.encoder = Encoder(num_layers, d_model, num_heads, d_ff, dropout)
        self.decoder = Decoder(num_layers, d_model, num_heads, d_ff, dropout)
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        self.pad_id = pad_id
        for _name, parameter in self.named_parameters():
            if parameter.ndim >= 2:
                nn.init.xavier_uniform_(parameter)

    def encode(self, src, src_mask):
        x = self.positional(self.src_embed(src))
        return self.encoder(x, src_mask)

    def decode(self, tgt, memory, src_mask, tgt_mask):
        y = self.positional(self.tgt_embed(tgt))
        return self.decoder(y, memory, src_mask, tgt_mask)

    def forward(self, src, tgt, src_mask, tgt_mask):
        memory = self.encode(src, src_mask)
        logits = self.generator(self.decode(tgt, memory, src_mask, tgt_mask))
        return logits
