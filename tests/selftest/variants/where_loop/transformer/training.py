"""Variant where_loop — label smoothing against a **dense target distribution**
(``full_like(ε/V)`` + ``scatter_`` of ``1 - ε + ε/V``, ignored rows zeroed), log-probabilities
as ``logits - logsumexp``; ``noam_lr`` with ``**``."""

import torch
from torch import nn


class LabelSmoothingLoss(nn.Module):
    def __init__(self, smoothing=0.1, ignore_index=0):
        super().__init__()
        self.smoothing = smoothing
        self.ignore_index = ignore_index

    def forward(self, logits, target):
        classes = logits.shape[-1]
        kept = target != self.ignore_index
        with torch.no_grad():
            dist = torch.full_like(logits, self.smoothing / classes)
            dist.scatter_(1, target.masked_fill(~kept, 0).unsqueeze(1), 1.0 - self.smoothing + self.smoothing / classes)
            dist *= kept.unsqueeze(1)
        log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        return -(dist * log_probs).sum() / kept.sum()


def noam_lr(step, d_model, warmup, factor=1.0):
    if step < 1:
        raise ValueError(f"step={step}: the schedule is defined for step >= 1")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
