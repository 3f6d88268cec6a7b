# This file is yours to complete: replace each `raise NotImplementedError` with your code.
# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)
"""Training pieces: the label-smoothed loss and the warm-up learning-rate schedule (paper §5.3, §5.4)."""

from torch import nn


class LabelSmoothingLoss(nn.Module):
    """Cross-entropy against smoothed targets (paper §5.4, ε_ls = 0.1; Szegedy et al., 2016).

    The target distribution puts ``1 - ε`` on the true class and spreads ``ε`` uniformly over
    **all** ``V`` classes (the true one included), exactly as
    ``F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=ε)``:

        loss_n = (1 - ε) * (-log p_n[target_n]) + ε * mean_v(-log p_n[v])
        loss   = mean of loss_n over the rows n whose target is not ignore_index

    ``forward(logits, target)``: ``logits`` ``(N, V)`` float, ``target`` ``(N,)`` long ->
    scalar tensor.

    Off limits here: ``F.cross_entropy`` and ``nn.CrossEntropyLoss`` (build it from
    ``log_softmax``).

    Pitfall: average over the non-ignored rows only (divide by their count, not by ``N``),
    and never index with an ignored target like ``-100``.
    """

    def __init__(self, smoothing: float = 0.1, ignore_index: int = 0):
        super().__init__()
        # TODO: keep smoothing and ignore_index
        raise NotImplementedError("training.LabelSmoothingLoss.__init__: keep smoothing and ignore_index")

    def forward(self, logits, target):
        # TODO: log_softmax; NLL of the target; mean NLL over classes; mix with (1-ε, ε); average over kept rows
        raise NotImplementedError(
            "training.LabelSmoothingLoss.forward: log_softmax; NLL of the target; mean NLL over classes; mix with (1-ε, ε); average over kept rows"
        )


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """The paper's learning-rate schedule (§5.3, equation 3):

        lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)

    It rises linearly for the first ``warmup`` steps and then decays with the inverse square
    root of the step number; the two branches meet at ``step == warmup``. Steps count from 1.

    Returns a Python float. Raises ``ValueError`` for ``step < 1`` (step 0 would divide by
    zero).

    Pitfall: ``warmup ** -1.5`` and ``step ** -0.5`` need float arithmetic; check ``step``
    before computing anything.
    """
    # TODO: reject step < 1, then the formula
    raise NotImplementedError("training.noam_lr: reject step < 1, then the formula")
