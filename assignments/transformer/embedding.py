# This file is yours to complete: replace each `raise NotImplementedError` with your code.
# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)
"""Token embeddings and the sinusoidal positional encoding (paper §3.4 and §3.5)."""

import math

import torch
from torch import nn


class TokenEmbedding(nn.Module):
    """Learned token embeddings, multiplied by √d_model (paper §3.4).

    Submodules (state-dict key ``embedding.weight``, shape ``(vocab_size, d_model)``):
        embedding: ``nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)``.

    ``forward(tokens)``: ``(B, T)`` long -> ``(B, T, d_model)``, equal to
    ``embedding(tokens) * sqrt(d_model)``.

    Why the scale: the embedding weights are small (their variance is about 1/d_model
    after the usual initialisation) while the positional encoding has entries of size 1;
    multiplying by √d_model keeps the token signal from drowning in the positions.

    Pitfall: multiply by ``math.sqrt(d_model)``, not by ``d_model`` and not by ``√vocab_size``.
    """

    def __init__(self, vocab_size: int, d_model: int, padding_idx=None):
        super().__init__()
        # TODO: an nn.Embedding called embedding; remember d_model
        raise NotImplementedError(
            "embedding.TokenEmbedding.__init__: an nn.Embedding called embedding; remember d_model"
        )

    def forward(self, tokens):
        # TODO: look the tokens up and scale by sqrt(d_model)
        raise NotImplementedError("embedding.TokenEmbedding.forward: look the tokens up and scale by sqrt(d_model)")


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal position signal to the embeddings (paper §3.5):

        pe[p, 2i]   = sin(p / 10000^(2i / d_model))
        pe[p, 2i+1] = cos(p / 10000^(2i / d_model))

    Each pair of features (2i, 2i+1) is a point on a circle turning with its own
    frequency, so ``pe[p + k]`` is a fixed rotation of ``pe[p]`` — the model can learn to
    attend by relative position. (For an odd ``d_model`` the last feature is a lone sine.)

    Buffers (state-dict key ``pe``):
        pe: ``(max_len, d_model)``, registered with ``register_buffer`` so that it moves with
            ``.to(device)`` but is not trained.

    Submodules: ``dropout = nn.Dropout(dropout)`` (§5.4: dropout on the sums of embeddings
    and positional encodings).

    ``forward(x)``: ``(B, T, d_model) -> (B, T, d_model)``, equal to ``dropout(x + pe[:T])``,
    in the dtype of ``x``. Raises ``ValueError`` when ``T > max_len``.

    Pitfall: the exponent is ``2i / d_model`` where ``2i`` is the *even* feature index —
    both features of a pair share one frequency. Position 0 encodes as ``[0, 1, 0, 1, …]``.
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.1):
        super().__init__()
        # TODO: build the (max_len, d_model) table, register it as buffer pe; an nn.Dropout
        raise NotImplementedError(
            "embedding.PositionalEncoding.__init__: build the (max_len, d_model) table, register it as buffer pe; an nn.Dropout"
        )

    def forward(self, x):
        # TODO: check T against max_len (ValueError), add pe[:T] in x's dtype, dropout
        raise NotImplementedError(
            "embedding.PositionalEncoding.forward: check T against max_len (ValueError), add pe[:T] in x's dtype, dropout"
        )
