"""The reference training.py (a correct noam_lr too), but LabelSmoothingLoss.forward is
F.cross_entropy with label smoothing (see NOTE.md)."""
import torch.nn.functional as F

from . import _reference_training as reference
from ._reference_training import *  # noqa: F403 — noam_lr and the rest, as the reference has them


class LabelSmoothingLoss(reference.LabelSmoothingLoss):
    def forward(self, logits, target):
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index, label_smoothing=self.smoothing)
