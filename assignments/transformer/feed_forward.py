# This file is yours to complete: replace each `raise NotImplementedError` with your code.
# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)
"""The position-wise feed-forward network (paper §3.3)."""

from torch import nn


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2   (paper §3.3, equation 2).

    The same two linear maps are applied to every position separately and identically
    ("two convolutions with kernel size 1"); the inner width ``d_ff`` is 2048 in the paper
    for ``d_model = 512``.

    Submodules (state-dict keys ``w_1.weight``, ``w_1.bias``, ``w_2.weight``, ``w_2.bias``):
        w_1: ``nn.Linear(d_model, d_ff)``.
        w_2: ``nn.Linear(d_ff, d_model)``.
        dropout: ``nn.Dropout(dropout)``, applied to the hidden activations.

    ``forward(x)``: ``(..., d_model) -> (..., d_model)`` (``...``: any number of leading axes,
    including none), equal to
    ``w_2(dropout(relu(w_1(x))))``.

    Pitfall: the dropout goes between the ReLU and ``w_2`` — not on the output, which the
    Add & Norm around this sublayer already drops out.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        # TODO: two nn.Linear layers w_1, w_2 and an nn.Dropout
        raise NotImplementedError(
            "feed_forward.PositionwiseFeedForward.__init__: two nn.Linear layers w_1, w_2 and an nn.Dropout"
        )

    def forward(self, x):
        # TODO: w_2(dropout(relu(w_1(x))))
        raise NotImplementedError("feed_forward.PositionwiseFeedForward.forward: w_2(dropout(relu(w_1(x))))")
