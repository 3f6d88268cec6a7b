# This file is yours to complete: replace each `raise NotImplementedError` with your code.
# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)
"""Scaled dot-product attention and multi-head attention (paper §3.2.1 and §3.2.2)."""

import math

import torch
from torch import nn


def scaled_dot_product_attention(query, key, value, mask=None, dropout=None):
    """Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V   (paper §3.2.1, equation 1).

    Args:
        query: ``(..., T_q, d_k)``.
        key: ``(..., T_k, d_k)``.
        value: ``(..., T_k, d_v)``.
        mask: optional bool tensor broadcastable to ``(..., T_q, T_k)``; **True = may attend**.
            A masked key must receive exactly zero weight. Every query row has at least one
            visible key.
        dropout: optional ``nn.Dropout`` applied to the attention weights (§5.4 applies
            dropout throughout the model); ``None`` means no dropout.

    Returns:
        ``(output, weights)``: output ``(..., T_q, d_v)`` and weights ``(..., T_q, T_k)``.
        ``weights`` are the ones actually multiplied with ``value`` (after dropout), so
        ``output == weights @ value`` always holds; each row of the weights sums to 1 in
        evaluation mode.

    The leading ``...`` axes (batch, heads) are carried along untouched: use ``@`` /
    ``matmul`` and ``transpose(-2, -1)``, never hard-coded axis numbers like ``transpose(1, 2)``.

    Pitfall: fill masked scores with a very negative number (or ``-inf``) **before** the
    softmax. Zeroing weights after the softmax leaves rows that no longer sum to 1.
    Divide by √d_k, where d_k is the size of the last axis of ``query``: without it, large
    dot products push the softmax into regions with vanishing gradients.
    """
    # TODO: scores = Q Kᵀ/√d_k; masked_fill(~mask, very negative); softmax over the key axis; dropout; @ V
    raise NotImplementedError(
        "attention.scaled_dot_product_attention: scores = Q Kᵀ/√d_k; masked_fill(~mask, very negative); softmax over the key axis; dropout; @ V"
    )


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, …, head_h) W^O,
    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)   (paper §3.2.2).

    The h heads are computed together: one ``nn.Linear(d_model, d_model)`` per projection,
    whose output is split into ``h`` heads of ``d_k = d_model // h`` features each.

    Submodules (state-dict keys ``w_q.weight``, ``w_q.bias``, …, ``w_o.bias``):
        w_q, w_k, w_v, w_o: ``nn.Linear(d_model, d_model)`` with bias.
        dropout: ``nn.Dropout(dropout)``, applied to the attention weights.

    Attributes:
        attn_weights: after each forward, the attention weights ``(B, h, T_q, T_k)``
            (detached; used for the attention pictures).

    Raises:
        ValueError: when ``d_model`` is not divisible by ``num_heads``.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        # TODO: check divisibility (ValueError), keep d_k and h, create w_q, w_k, w_v, w_o, dropout, attn_weights = None
        raise NotImplementedError(
            "attention.MultiHeadAttention.__init__: check divisibility (ValueError), keep d_k and h, create w_q, w_k, w_v, w_o, dropout, attn_weights = None"
        )

    def forward(self, query, key, value, mask=None):
        """
        Args:
            query: ``(B, T_q, d_model)``.
            key, value: ``(B, T_k, d_model)``.
            mask: optional bool, ``(B, 1, T_k)``, ``(B, T_q, T_k)`` or ``(1, T_q, T_k)``;
                True = may attend. Insert the head axis (``mask.unsqueeze(1)``) so that it
                broadcasts against the scores ``(B, h, T_q, T_k)``.

        Returns:
            ``(B, T_q, d_model)``.

        Shape story: project ``(B, T, d_model)`` -> split heads ``(B, T, h, d_k)`` ->
        transpose ``(B, h, T, d_k)`` -> attention ``(B, h, T_q, d_k)`` -> transpose back
        ``(B, T_q, h, d_k)`` -> merge ``(B, T_q, d_model)`` -> ``w_o``.

        Pitfall: ``x.view(B, h, T, d_k)`` straight from ``(B, T, d_model)`` has the right
        shape and the wrong content — split the last axis first, then transpose. Merging the
        heads back needs the transpose *before* the view (and ``.contiguous()``).
        """
        # TODO: project, split heads, attend (mask.unsqueeze(1)), merge heads, w_o
        raise NotImplementedError(
            "attention.MultiHeadAttention.forward: project, split heads, attend (mask.unsqueeze(1)), merge heads, w_o"
        )
