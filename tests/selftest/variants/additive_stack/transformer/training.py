"""Variant additive_stack — label smoothing from ``torch.log_softmax`` with the NLL part from
``F.nll_loss(..., ignore_index=...)`` (mean over the kept rows) and the uniform part averaged
over ``log_probs[kept]``; ``noam_lr`` with ``math.pow``."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class LabelSmoothingLoss(nn.Module):
    def __init__(self, smoothing=0.1, ignore_index=0):
        super().__init__()
        self.smoothing = smoothing
        self.ignore_index = ignore_index

    def forward(self, logits, target):
        log_probs = torch.log_softmax(logits, dim=-1)
        nll = F.nll_loss(log_probs, target, ignore_index=self.ignore_index)
        uniform = -log_probs[target != self.ignore_index].mean(dim=-1).mean()
        return (1.0 - self.smoothing) * nll + self.smoothing * uniform


def noam_lr(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError("step must be at least 1")
    return factor * math.pow(d_model, -0.5) * min(math.pow(step, -0.5), step * math.pow(warmup, -1.5))
