# This file is yours to complete: replace each `raise NotImplementedError` with your code.
# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)
"""The encoder and decoder stacks and the full encoder-decoder model (paper §3.1, Figure 1)."""

from torch import nn

from .embedding import PositionalEncoding, TokenEmbedding
from .layers import DecoderLayer, EncoderLayer


class Encoder(nn.Module):
    """A stack of ``num_layers`` identical ``EncoderLayer``s (N = 6 in the paper).

    Submodules: ``layers``, an ``nn.ModuleList`` of ``EncoderLayer`` (state-dict keys
    ``layers.0.self_attn.w_q.weight``, …). No final layer norm: with post-norm every layer
    already ends in one.

    ``forward(x, src_mask)``: ``(B, T, d_model)``, mask ``(B, 1, T)`` -> ``(B, T, d_model)``.

    Pitfall: feed each layer the previous layer's output, not the original ``x``.
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        # TODO: an nn.ModuleList of num_layers EncoderLayers
        raise NotImplementedError("model.Encoder.__init__: an nn.ModuleList of num_layers EncoderLayers")

    def forward(self, x, src_mask):
        # TODO: run the layers one after the other
        raise NotImplementedError("model.Encoder.forward: run the layers one after the other")


class Decoder(nn.Module):
    """A stack of ``num_layers`` identical ``DecoderLayer``s; every layer attends to the same
    encoder output ``memory``.

    Submodules: ``layers``, an ``nn.ModuleList`` of ``DecoderLayer``. No final layer norm.

    ``forward(x, memory, src_mask, tgt_mask)``: ``x`` ``(B, T_tgt, d_model)``, ``memory``
    ``(B, T_src, d_model)`` -> ``(B, T_tgt, d_model)``.
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        # TODO: an nn.ModuleList of num_layers DecoderLayers
        raise NotImplementedError("model.Decoder.__init__: an nn.ModuleList of num_layers DecoderLayers")

    def forward(self, x, memory, src_mask, tgt_mask):
        # TODO: run the layers one after the other, each with the same memory
        raise NotImplementedError(
            "model.Decoder.forward: run the layers one after the other, each with the same memory"
        )


class Transformer(nn.Module):
    """The encoder-decoder Transformer (paper Figure 1).

        memory = encoder(positional(src_embed(src)), src_mask)
        hidden = decoder(positional(tgt_embed(tgt)), memory, src_mask, tgt_mask)
        logits = generator(hidden)

    Submodules (state-dict prefixes):
        src_embed, tgt_embed: ``TokenEmbedding(src_vocab_size / tgt_vocab_size, d_model,
            padding_idx=pad_id)``.
        positional: one ``PositionalEncoding(d_model, max_len, dropout)``, shared by both sides.
        encoder: ``Encoder(num_layers, d_model, num_heads, d_ff, dropout)``.
        decoder: ``Decoder(num_layers, d_model, num_heads, d_ff, dropout)``.
        generator: ``nn.Linear(d_model, tgt_vocab_size)``, producing logits (no softmax: the
            loss and the decoders apply it).

    Attributes:
        pad_id: the padding token id (the decoders write it after ``</s>``).

    Methods:
        encode(src, src_mask): ``(B, T_src)`` long, ``(B, 1, T_src)`` -> memory ``(B, T_src, d_model)``.
        decode(tgt, memory, src_mask, tgt_mask): ``(B, T_tgt)`` long -> ``(B, T_tgt, d_model)``.
        forward(src, tgt, src_mask, tgt_mask): -> logits ``(B, T_tgt, tgt_vocab_size)``.

    Initialise every weight matrix (parameters with ``dim() > 1``) with
    ``nn.init.xavier_uniform_`` as the Annotated Transformer does; it trains much more
    reliably than PyTorch's defaults at this depth.

    Pitfall: ``tgt`` is the decoder *input* (``<s>`` followed by the target without its
    last token); shifting the target is the caller's job, not the model's.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int = 512,
        num_heads: int = 8,
        num_layers: int = 6,
        d_ff: int = 2048,
        dropout: float = 0.1,
        max_len: int = 5000,
        pad_id: int = 0,
    ):
        super().__init__()
        # TODO: keep pad_id; create src_embed, tgt_embed, positional, encoder, decoder, generator; Xavier-initialise the matrices
        raise NotImplementedError(
            "model.Transformer.__init__: keep pad_id; create src_embed, tgt_embed, positional, encoder, decoder, generator; Xavier-initialise the matrices"
        )

    def encode(self, src, src_mask):
        # TODO: embed, add positions, run the encoder
        raise NotImplementedError("model.Transformer.encode: embed, add positions, run the encoder")

    def decode(self, tgt, memory, src_mask, tgt_mask):
        # TODO: embed, add positions, run the decoder
        raise NotImplementedError("model.Transformer.decode: embed, add positions, run the decoder")

    def forward(self, src, tgt, src_mask, tgt_mask):
        # TODO: encode, decode, generator
        raise NotImplementedError("model.Transformer.forward: encode, decode, generator")
