# This file is yours to complete: replace each `raise NotImplementedError` with your code.
# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)
"""One encoder layer and one decoder layer (paper §3.1, Figure 1)."""

from torch import nn

from .attention import MultiHeadAttention
from .feed_forward import PositionwiseFeedForward
from .normalization import AddNorm


class EncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network, each wrapped in Add & Norm (§3.1):

        x = add_norm1(x, lambda x: self_attn(x, x, x, src_mask))
        x = add_norm2(x, feed_forward)

    Submodules (state-dict prefixes): ``self_attn`` (``MultiHeadAttention``),
    ``feed_forward`` (``PositionwiseFeedForward``), ``add_norm1``, ``add_norm2``
    (``AddNorm``). All of them use the same ``dropout`` rate.

    ``forward(x, src_mask)``: ``x`` ``(B, T, d_model)``; ``src_mask`` bool ``(B, 1, T)`` (True =
    real token), or any mask ``MultiHeadAttention.forward`` accepts (``(B, T, T)``,
    ``(1, T, T)``): it is passed unchanged to ``self_attn``. Returns ``(B, T, d_model)``. Equivalent to
    ``nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, batch_first=True)``
    (post-norm, ReLU).

    Pitfall: self-attention means query, key and value are all the same ``x``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        # TODO: self_attn, feed_forward, add_norm1, add_norm2
        raise NotImplementedError("layers.EncoderLayer.__init__: self_attn, feed_forward, add_norm1, add_norm2")

    def forward(self, x, src_mask):
        # TODO: two Add & Norm steps (self-attention with src_mask, then feed-forward)
        raise NotImplementedError(
            "layers.EncoderLayer.forward: two Add & Norm steps (self-attention with src_mask, then feed-forward)"
        )


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output, feed-forward (§3.1):

        x = add_norm1(x, lambda x: self_attn(x, x, x, tgt_mask))
        x = add_norm2(x, lambda x: cross_attn(x, memory, memory, src_mask))
        x = add_norm3(x, feed_forward)

    Submodules (state-dict prefixes): ``self_attn``, ``cross_attn`` (``MultiHeadAttention``),
    ``feed_forward``, ``add_norm1``, ``add_norm2``, ``add_norm3``.

    ``forward(x, memory, src_mask, tgt_mask)``: ``x`` ``(B, T_tgt, d_model)``; ``memory``
    ``(B, T_src, d_model)`` (the encoder output); ``src_mask`` ``(B, 1, T_src)``; ``tgt_mask``
    ``(B, T_tgt, T_tgt)`` or ``(1, T_tgt, T_tgt)``. Returns ``(B, T_tgt, d_model)``.
    Equivalent to ``nn.TransformerDecoderLayer(..., batch_first=True)``.

    Pitfall: in cross-attention the queries come from the decoder (``x``) and the keys and
    values from ``memory``, and the mask is ``src_mask`` — the keys are source positions.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        # TODO: self_attn, cross_attn, feed_forward, add_norm1, add_norm2, add_norm3
        raise NotImplementedError(
            "layers.DecoderLayer.__init__: self_attn, cross_attn, feed_forward, add_norm1, add_norm2, add_norm3"
        )

    def forward(self, x, memory, src_mask, tgt_mask):
        # TODO: three Add & Norm steps: masked self-attention, cross-attention, feed-forward
        raise NotImplementedError(
            "layers.DecoderLayer.forward: three Add & Norm steps: masked self-attention, cross-attention, feed-forward"
        )
