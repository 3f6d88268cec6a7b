"""Variant additive_stack — feed-forward with ``F.relu`` and the dropout module in an explicit
sequence of steps."""

import torch.nn.functional as F
from torch import nn


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        hidden = F.relu(self.w_1(x))
        hidden = self.dropout(hidden)
        return self.w_2(hidden)
