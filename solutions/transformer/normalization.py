"""Layer normalisation and the residual "Add & Norm" around every sublayer (paper §3.1).

Layer normalisation: Ba, Kiros & Hinton (2016), https://arxiv.org/abs/1607.06450.
"""

import torch
from torch import nn


class LayerNorm(nn.Module):
    """LayerNorm(x) = weight * (x - mean) / sqrt(var + eps) + bias, over the last axis.

    ``mean`` and ``var`` are computed over the last axis (the ``d_model`` features of one
    position) with the **biased** variance (divide by ``d_model``, not ``d_model - 1``), as
    ``nn.LayerNorm`` does.

    Parameters (state-dict keys ``weight``, ``bias``):
        weight: ``(d_model,)`` initialised to ones (the gain γ).
        bias: ``(d_model,)`` initialised to zeros (β).

    ``forward(x)``: ``(..., d_model) -> (..., d_model)`` (``...``: any number of leading axes,
    including none), same dtype and device as ``x``.

    Off limits: ``nn.LayerNorm`` and ``F.layer_norm``.

    Pitfall: ``eps`` goes *inside* the square root; ``torch.var`` is unbiased by default
    (pass ``unbiased=False`` or ``correction=0``).
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        # BEGIN SOLUTION: nn.Parameter weight (ones) and bias (zeros); keep eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION: mean and biased variance over the last axis (keepdim=True), normalise, scale and shift
        # The biased variance written out as the mean of the squared deviations reuses `centered`
        # (x.var(dim=-1, unbiased=False) would compute the mean and the deviations again).
        centered = x - x.mean(dim=-1, keepdim=True)
        var = (centered * centered).mean(dim=-1, keepdim=True)
        return self.weight * centered / torch.sqrt(var + self.eps) + self.bias
        # END SOLUTION


class AddNorm(nn.Module):
    """The residual connection around a sublayer, followed by layer normalisation (§3.1, §5.4):

        AddNorm(x, sublayer) = LayerNorm(x + Dropout(sublayer(x)))

    This is the paper's *post-norm* arrangement: the norm comes after the residual sum.

    Submodules (state-dict keys ``norm.weight``, ``norm.bias``):
        norm: the ``LayerNorm(d_model)`` above.
        dropout: ``nn.Dropout(dropout)``, applied to the sublayer's output.

    ``forward(x, sublayer)``: ``x`` is ``(B, T, d_model)``; ``sublayer`` is any callable
    mapping ``(B, T, d_model) -> (B, T, d_model)`` (an attention or feed-forward block,
    usually wrapped in a lambda). Returns ``(B, T, d_model)``.

    Pitfall: ``norm(x) + sublayer(norm(x))`` is the *pre-norm* variant (used by GPT-2 and
    nanoGPT); the paper, and this assignment, normalise after the sum.
    """

    def __init__(self, d_model: int, dropout: float = 0.1):
        super().__init__()
        # BEGIN SOLUTION: a LayerNorm(d_model) called norm and an nn.Dropout called dropout
        self.norm = LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        # END SOLUTION

    def forward(self, x, sublayer):
        # BEGIN SOLUTION: norm(x + dropout(sublayer(x)))
        return self.norm(x + self.dropout(sublayer(x)))
        # END SOLUTION
