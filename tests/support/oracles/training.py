"""Reference values for the `training` part (paper §5.3, §5.4), independent of the solutions.

* :func:`label_smoothing_np` / :func:`label_smoothing_grad_np` — numpy float64 label-smoothed
  cross-entropy (``ε`` spread over all ``V`` classes, mean over the rows whose target is not
  ``ignore_index``) and its gradient with respect to the logits.
* :func:`label_smoothing_builtin` — the same through ``F.cross_entropy(label_smoothing=ε)``.
* ``bug_*`` — what a known wrong variant returns (for ``likely_bugs``); ``None`` where the
  variant is undefined for the given arguments.
* :func:`noam_lr_reference` and ``noam_bug_*`` — the schedule of equation (3), in Python floats.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from grader.i18n import _


def _log_softmax_np(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _arrays(logits, target):
    x = logits.detach().double().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits, np.float64)
    t = target.cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
    return x, t.astype(np.int64)


def label_smoothing_np(logits, target, smoothing: float, ignore_index: int) -> float:
    """``mean over kept rows of (1 - ε) * (-log p[target]) + ε * mean_v(-log p[v])``."""
    x, t = _arrays(logits, target)
    keep = t != ignore_index
    log_p = _log_softmax_np(x[keep])
    nll = -log_p[np.arange(len(log_p)), t[keep]]
    uniform = -log_p.mean(axis=-1)
    return float(((1.0 - smoothing) * nll + smoothing * uniform).mean())


def label_smoothing_grad_np(logits, target, smoothing: float, ignore_index: int) -> np.ndarray:
    """``d loss / d logits``: ``(softmax - q) / n_kept`` on kept rows, 0 on ignored rows, with
    ``q = (1 - ε) one_hot(target) + ε / V``."""
    x, t = _arrays(logits, target)
    n, v = x.shape
    keep = t != ignore_index
    grad = np.zeros_like(x)
    p = np.exp(_log_softmax_np(x[keep]))
    q = np.full_like(p, smoothing / v)
    q[np.arange(len(q)), t[keep]] += 1.0 - smoothing
    grad[keep] = (p - q) / keep.sum()
    return grad


def label_smoothing_builtin(logits: torch.Tensor, target: torch.Tensor, smoothing: float, ignore_index: int):
    return F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=smoothing)


# --- signatures of known bugs (float64 scalars; None where undefined) -------------------------


def _rows(logits, target, ignore_index):
    x, t = _arrays(logits, target)
    keep = t != ignore_index
    return x, t, keep


def bug_spread_over_other_classes(logits, target, smoothing, ignore_index):
    """``ε / (V - 1)`` on every wrong class (Szegedy et al.'s form), cross-entropy."""
    x, t, keep = _rows(logits, target, ignore_index)
    log_p = _log_softmax_np(x[keep])
    v = x.shape[1]
    q = np.full_like(log_p, smoothing / (v - 1))
    q[np.arange(len(q)), t[keep]] = 1.0 - smoothing
    return float(-(q * log_p).sum(axis=-1).mean())


def bug_annotated_transformer_kl(logits, target, smoothing, ignore_index):
    """The Annotated Transformer's ``LabelSmoothing``: KL divergence (not cross-entropy) to a
    target with ``ε / (V - 2)`` on the classes other than the target and the padding class
    (``ignore_index``), summed and divided by the number of kept rows."""
    x, t, keep = _rows(logits, target, ignore_index)
    v = x.shape[1]
    if not 0 <= ignore_index < v or v < 3:
        return None
    log_p = _log_softmax_np(x[keep])
    q = np.full_like(log_p, smoothing / (v - 2))
    q[:, ignore_index] = 0.0
    q[np.arange(len(q)), t[keep]] = 1.0 - smoothing
    safe = np.where(q > 0, q, 1.0)
    return float((q * (np.log(safe) - log_p)).sum() / keep.sum())


def bug_mean_over_all_rows(logits, target, smoothing, ignore_index):
    """Sum over the kept rows divided by ``N`` (all rows) instead of the number kept."""
    x, t, keep = _rows(logits, target, ignore_index)
    return label_smoothing_np(logits, target, smoothing, ignore_index) * keep.sum() / len(t)


def bug_ignored_rows_kept(logits, target, smoothing, ignore_index):
    """Ignored rows are not dropped (only possible when ``ignore_index`` is a real class)."""
    x, t = _arrays(logits, target)
    if not 0 <= ignore_index < x.shape[1]:
        return None
    return label_smoothing_np(x, t, smoothing, ignore_index=-12345)


def bug_no_log_softmax(logits, target, smoothing, ignore_index):
    """The raw logits used as log-probabilities."""
    x, t, keep = _rows(logits, target, ignore_index)
    log_p = x[keep]
    nll = -log_p[np.arange(len(log_p)), t[keep]]
    return float(((1.0 - smoothing) * nll + smoothing * -log_p.mean(axis=-1)).mean())


def bug_weights_swapped(logits, target, smoothing, ignore_index):
    """``ε`` on the target and ``1 - ε`` spread uniformly."""
    return label_smoothing_np(logits, target, 1.0 - smoothing, ignore_index)


def likely_loss_bugs(logits, target, smoothing, ignore_index, dtype) -> dict:
    """``{student-words description: 0-dim tensor}`` for ``assert_close(likely_bugs=...)``."""
    described = {
        _(
            "the smoothing mass ε is spread over the V-1 wrong classes; F.cross_entropy spreads it over "
            "all V classes (the true one included)"
        ): bug_spread_over_other_classes,
        _(
            "this is the Annotated Transformer's KL-divergence loss (ε/(V-2), padding column zeroed); the "
            "contract asks for cross-entropy with ε spread over all V classes"
        ): bug_annotated_transformer_kl,
        _(
            "the loss is averaged over all N rows; divide by the number of rows whose target is not ignore_index"
        ): bug_mean_over_all_rows,
        _("rows whose target is ignore_index are not dropped"): bug_ignored_rows_kept,
        _("the raw logits are used as log-probabilities: apply log_softmax first"): bug_no_log_softmax,
        _("1 - ε and ε are swapped (the true class must get weight 1 - ε)"): bug_weights_swapped,
    }
    correct = label_smoothing_np(logits, target, smoothing, ignore_index)
    out = {}
    for text, fn in described.items():
        value = fn(logits, target, smoothing, ignore_index)
        if value is not None and not math.isclose(value, correct, rel_tol=1e-6, abs_tol=1e-9):
            out[text] = torch.tensor(value, dtype=dtype)
    return out


# --- the learning-rate schedule -----------------------------------------------------------------


def noam_lr_reference(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """Equation (3): ``factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``."""
    if step < 1:
        raise ValueError("step must be >= 1")
    return factor / math.sqrt(d_model) * min(1.0 / math.sqrt(step), step / warmup**1.5)


def noam_likely_bugs(steps, d_model: int, warmup: int, factor: float) -> dict:
    """``{description: float64 tensor over steps}`` (NaN where a variant is undefined)."""
    f = factor

    def safe(fn, s):
        try:
            return fn(s)
        except (ValueError, ZeroDivisionError):
            return math.nan

    def vec(fn):
        return torch.tensor([safe(fn, s) for s in steps], dtype=torch.float64)

    return {
        _("off by one: the schedule is evaluated at step + 1 (peak at warmup - 1); steps count from 1"): vec(
            lambda s: noam_lr_reference(s + 1, d_model, warmup, f)
        ),
        _("off by one: the schedule is evaluated at step - 1 (peak at warmup + 1); steps count from 1"): vec(
            lambda s: noam_lr_reference(s - 1, d_model, warmup, f)
        ),
        _(
            "off by one in the warm-up branch: (step - 1) * warmup^-1.5 instead of step * warmup^-1.5 "
            "(the learning rate starts at 0 and peaks one step late); steps count from 1"
        ): vec(lambda s: f * d_model**-0.5 * min(s**-0.5, (s - 1) * warmup**-1.5)),
        _("the exponents are swapped: it must be min(step^-0.5, step * warmup^-1.5)"): vec(
            lambda s: f * d_model**-0.5 * min(s**-1.5, s * warmup**-0.5)
        ),
        _("d_model^0.5 instead of d_model^-0.5"): vec(lambda s: f * d_model**0.5 * min(s**-0.5, s * warmup**-1.5)),
        _("max instead of min of the two branches"): vec(lambda s: f * d_model**-0.5 * max(s**-0.5, s * warmup**-1.5)),
        _("factor is missing"): vec(lambda s: noam_lr_reference(s, d_model, warmup, 1.0)),
    }
