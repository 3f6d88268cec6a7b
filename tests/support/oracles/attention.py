"""Oracles for scaled dot-product attention and multi-head attention (paper §3.2.1, §3.2.2).

Two independent references:

* a numpy float64 re-implementation (``sdpa`` and ``multi_head_attention``), which can also
  compute what the usual mistakes return (no 1/√d_k, softmax over the query axis, masking
  after the softmax, masked scores set to 0, heads split without the transpose, …) so that a
  test can name the mistake a student made (``bug_descriptions``, in the student's language);
* PyTorch built-ins: ``F.scaled_dot_product_attention`` (its bool ``attn_mask`` has the
  contract's convention, True = may attend) and ``nn.MultiheadAttention(batch_first=True,
  bias=True)`` with weights copied from a state dict in the contract's names. Mind that
  ``nn.MultiheadAttention``'s bool masks mean the OPPOSITE (True = NOT allowed); the helpers
  here convert.

Weights are generated here from a seeded ``torch.Generator``: expected values never depend
on the order in which the code under test consumes the global random generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grader.i18n import _

PROJECTIONS = ("w_q", "w_k", "w_v", "w_o")

# Masked scores of the bug variants are filled with this (not -inf) so that a variant whose
# mask hides a whole row (an inverted mask) still returns finite numbers to compare against.
_VERY_NEGATIVE = -1e300

SDPA_VARIANTS = (
    "correct",
    "unscaled",  # no 1/sqrt(d_k)
    "scaled_by_d_k",  # 1/d_k instead of 1/sqrt(d_k)
    "softmax_over_queries",  # softmax(dim=-2)
    "mask_after_softmax",  # weights zeroed after the softmax, rows not renormalised
    "mask_inverted",  # ~mask
    "mask_ignored",
    "mask_filled_with_zero",  # masked_fill(~mask, 0): a masked key keeps a weight exp(0 - max) / sum
)

MHA_VARIANTS = SDPA_VARIANTS + (
    "scaled_by_sqrt_d_model",  # 1/sqrt(d_model) instead of 1/sqrt(d_k)
    "split_without_transpose",  # view(B, h, T, d_k) straight from (B, T, d_model)
    "merge_without_transpose",  # view(B, T, d_model) straight from (B, h, T, d_k)
    "no_output_projection",  # w_o missing
    "values_projected_with_w_k",  # v = w_k(value): a copy-paste slip
)


def as_numpy(value) -> np.ndarray:
    """A float64 (or bool) numpy copy of a tensor / array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.numpy() if value.dtype == torch.bool else value.double().numpy()
    array = np.asarray(value)
    return array if array.dtype == bool else array.astype(np.float64)


# --------------------------------------------------------------------------- numpy oracle


def _softmax(scores: np.ndarray, axis: int) -> np.ndarray:
    shifted = scores - scores.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def sdpa(query, key, value, mask=None, variant: str = "correct", scale: float | None = None):
    """softmax(Q Kᵀ / √d_k) V in numpy float64.

    Args:
        query ``(..., T_q, d_k)``, key ``(..., T_k, d_k)``, value ``(..., T_k, d_v)``;
        mask: bool, broadcastable to ``(..., T_q, T_k)``, True = may attend.
        variant: one of ``SDPA_VARIANTS`` (what a buggy implementation computes).
        scale: overrides the divisor √d_k (used by the MHA variant "scaled by √d_model").

    Returns:
        ``(output, weights)`` as float64 numpy arrays.
    """
    if variant not in SDPA_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    q, k, v = as_numpy(query), as_numpy(key), as_numpy(value)
    d_k = q.shape[-1]
    scores = q @ np.swapaxes(k, -1, -2)
    if scale is not None:
        scores = scores / scale
    elif variant == "scaled_by_d_k":
        scores = scores / d_k
    elif variant != "unscaled":
        scores = scores / math.sqrt(d_k)
    visible = None
    if mask is not None and variant != "mask_ignored":
        visible = np.broadcast_to(as_numpy(mask).astype(bool), scores.shape)
        if variant == "mask_inverted":
            visible = ~visible
    axis = -2 if variant == "softmax_over_queries" else -1
    if visible is None:
        weights = _softmax(scores, axis)
    elif variant == "mask_after_softmax":
        weights = np.where(visible, _softmax(scores, axis), 0.0)
    elif variant == "correct":
        # -inf before the softmax: a masked key gets an exact zero.
        weights = _softmax(np.where(visible, scores, -np.inf), axis)
    elif variant == "mask_filled_with_zero":
        weights = _softmax(np.where(visible, scores, 0.0), axis)
    else:
        weights = _softmax(np.where(visible, scores, _VERY_NEGATIVE), axis)
    return weights @ v, weights


def random_mha_state(d_model: int, seed: int, dtype=torch.float64) -> dict:
    """A state dict in the contract's names (``w_q.weight``, ``w_q.bias``, …, ``w_o.bias``)
    from its own seeded generator. Biases are non-zero so that a missing bias shows."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name in PROJECTIONS:
        state[f"{name}.weight"] = (
            torch.randn(d_model, d_model, generator=generator, dtype=torch.float64) / math.sqrt(d_model)
        ).to(dtype)
        state[f"{name}.bias"] = (torch.randn(d_model, generator=generator, dtype=torch.float64) * 0.1).to(dtype)
    return state


def _linear(x: np.ndarray, state: dict, name: str) -> np.ndarray:
    return x @ as_numpy(state[f"{name}.weight"]).T + as_numpy(state[f"{name}.bias"])


def multi_head_attention(state, query, key, value, num_heads: int, mask=None, variant: str = "correct"):
    """MultiHead(Q, K, V) = Concat(head_1, …, head_h) W^O in numpy float64.

    Args:
        state: contract state dict (tensors or arrays).
        query ``(B, T_q, d_model)``, key/value ``(B, T_k, d_model)``.
        mask: bool ``(B|1, 1|T_q, T_k)``, True = may attend (the same for every head).
        variant: one of ``MHA_VARIANTS``.

    Returns:
        ``(output (B, T_q, d_model), weights (B, h, T_q, T_k))``.
    """
    if variant not in MHA_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    q_in, k_in, v_in = as_numpy(query), as_numpy(key), as_numpy(value)
    batch, t_q, d_model = q_in.shape
    d_k = d_model // num_heads

    def split(x):  # (B, T, d_model) -> (B, h, T, d_k)
        b, t, _ = x.shape
        if variant == "split_without_transpose":
            return x.reshape(b, num_heads, t, d_k)
        return x.reshape(b, t, num_heads, d_k).transpose(0, 2, 1, 3)

    q = split(_linear(q_in, state, "w_q"))
    k = split(_linear(k_in, state, "w_k"))
    v = split(_linear(v_in, state, "w_k" if variant == "values_projected_with_w_k" else "w_v"))
    head_mask = None if mask is None else as_numpy(mask).astype(bool)[:, None]
    sdpa_variant = variant if variant in SDPA_VARIANTS else "correct"
    scale = math.sqrt(d_model) if variant == "scaled_by_sqrt_d_model" else None
    out, weights = sdpa(q, k, v, head_mask, variant=sdpa_variant, scale=scale)
    if variant == "merge_without_transpose":
        merged = out.reshape(batch, t_q, d_model)
    else:
        merged = out.transpose(0, 2, 1, 3).reshape(batch, t_q, d_model)
    if variant == "no_output_projection":
        return merged, weights
    return _linear(merged, state, "w_o"), weights


# What to look at, in the tests of scaled dot-product and multi-head attention.
MHA_HINT = _(
    "project with w_q/w_k/w_v, split (B, T, d_model) -> (B, T, h, d_k) -> transpose to (B, h, T, d_k), "
    "attend with mask.unsqueeze(1), transpose back, merge to (B, T_q, d_model), then w_o"
)
STABLE_HINT = _("subtract the row maximum before exp (torch.softmax does), and mask with -inf or finfo.min")


def bug_descriptions() -> dict[str, str]:
    """``{variant: what the student did, in their words}`` (in the current language)."""
    return {
        "unscaled": _("no 1/sqrt(d_k) scaling of the scores"),
        "scaled_by_d_k": _("scores divided by d_k instead of sqrt(d_k)"),
        "scaled_by_sqrt_d_model": _("scores divided by sqrt(d_model) instead of sqrt(d_k) = sqrt(d_model / h)"),
        "softmax_over_queries": _("softmax over the query axis (dim=-2) instead of the key axis (dim=-1)"),
        "mask_after_softmax": _("masked weights zeroed after the softmax: rows no longer sum to 1"),
        "mask_inverted": _("the mask is inverted: True means 'may attend'"),
        "mask_ignored": _("the mask is ignored"),
        "mask_filled_with_zero": _(
            "masked scores filled with 0 instead of -inf: a masked key still gets weight after the softmax"
        ),
        "split_without_transpose": _(
            "heads split with view(B, h, T, d_k) straight from (B, T, d_model): split the last axis, then transpose"
        ),
        "merge_without_transpose": _("heads merged without transposing back to (B, T_q, h, d_k) first"),
        "no_output_projection": _("the output projection w_o is missing"),
        "values_projected_with_w_k": _("values projected with w_k instead of w_v"),
    }


def mask_label(kind: str | None) -> str:
    """How a test's mask kind reads in an input description."""
    return {
        None: _("no mask"),
        "padding": _("padding mask (B, 1, T_k)"),
        "random": _("random mask (B, T_q, T_k)"),
        "shared": _("one mask (1, T_q, T_k) shared by the batch"),
        "causal": _("causal mask (1, T, T)"),
    }[kind]


def mha_bug_outputs(state, query, key, value, num_heads, mask, dtype, variants=None) -> dict:
    """``{student-words description: output of that buggy MHA}`` for ``likely_bugs``."""
    descriptions = bug_descriptions()
    bugs = {}
    for variant in MHA_VARIANTS[1:]:
        if variants is not None and variant not in variants:
            continue
        if mask is None and variant.startswith("mask_"):
            continue
        out, _weights = multi_head_attention(state, query, key, value, num_heads, mask, variant)
        bugs[descriptions[variant]] = torch.from_numpy(out).to(dtype)
    return bugs


def sdpa_bug_outputs(query, key, value, mask, dtype, which: str = "output", variants=None) -> dict:
    """``{student-words description: output (or weights) of that buggy attention}``."""
    descriptions = bug_descriptions()
    index = 0 if which == "output" else 1
    bugs = {}
    for variant in SDPA_VARIANTS[1:]:
        if variants is not None and variant not in variants:
            continue
        if mask is None and variant.startswith("mask_"):
            continue
        result = sdpa(query, key, value, mask, variant)[index]
        bugs[descriptions[variant]] = torch.from_numpy(np.ascontiguousarray(result)).to(dtype)
    return bugs


# --------------------------------------------------------------------------- PyTorch built-ins


def builtin_sdpa(query, key, value, mask=None) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` (bool attn_mask: True = may attend, as the contract)."""
    if mask is not None and mask.dim() < 2:
        # The contract allows any mask broadcastable to (..., T_q, T_k); the built-in wants >= 2-D.
        mask = mask.expand(query.size(-2), key.size(-2))
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)


def builtin_mha(state: dict, d_model: int, num_heads: int, dtype=torch.float64) -> nn.MultiheadAttention:
    """``nn.MultiheadAttention(batch_first=True, bias=True, dropout=0)`` in eval mode with the
    contract's weights: in_proj = cat(w_q, w_k, w_v), out_proj = w_o."""
    mha = nn.MultiheadAttention(d_model, num_heads, dropout=0.0, bias=True, batch_first=True, dtype=dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([state["w_q.weight"], state["w_k.weight"], state["w_v.weight"]], 0))
        mha.in_proj_bias.copy_(torch.cat([state["w_q.bias"], state["w_k.bias"], state["w_v.bias"]], 0))
        mha.out_proj.weight.copy_(state["w_o.weight"])
        mha.out_proj.bias.copy_(state["w_o.bias"])
    return mha.eval()


def builtin_mask_arguments(mask, batch: int, t_q: int, num_heads: int) -> dict:
    """The contract's mask (True = may attend; ``(B, 1, T_k)``, ``(B, T_q, T_k)`` or
    ``(1, T_q, T_k)``) as ``nn.MultiheadAttention`` keyword arguments (True = NOT allowed)."""
    if mask is None:
        return {}
    mask = mask.bool()
    if mask.size(1) == 1 and mask.size(0) == batch and mask.dim() == 3:
        # (B, 1, T_k): a key padding mask. (Also right when T_q == 1.)
        return {"key_padding_mask": ~mask[:, 0, :]}
    if mask.size(0) == 1:
        return {"attn_mask": ~mask[0].expand(t_q, mask.size(-1))}
    # (B, T_q, T_k): one (T_q, T_k) mask per batch element, repeated for every head.
    mask = mask.expand(batch, t_q, mask.size(-1))
    return {"attn_mask": ~mask.repeat_interleave(num_heads, dim=0)}


def run_builtin_mha(mha: nn.MultiheadAttention, query, key, value, mask=None):
    """``(output (B, T_q, d_model), weights (B, h, T_q, T_k))`` of the built-in."""
    kwargs = builtin_mask_arguments(mask, query.size(0), query.size(1), mha.num_heads)
    out, weights = mha(query, key, value, need_weights=True, average_attn_weights=False, **kwargs)
    return out, weights


def builtin_mha_outputs(state, d_model, num_heads, query, key, value, mask, dtype):
    """nn.MultiheadAttention in float64 on the same inputs: (output, weights) cast to ``dtype``."""
    builtin = builtin_mha({k: v.double() for k, v in state.items()}, d_model, num_heads)
    with torch.no_grad():
        out, weights = run_builtin_mha(builtin, query.double(), key.double(), value.double(), mask)
    return out.to(dtype), weights.to(dtype)


def builtin_mha_param_grads(mha: nn.MultiheadAttention) -> dict:
    """The built-in's parameter gradients in the contract's names."""
    d = mha.embed_dim
    w, b = mha.in_proj_weight.grad, mha.in_proj_bias.grad
    return {
        "w_q.weight": w[:d],
        "w_k.weight": w[d : 2 * d],
        "w_v.weight": w[2 * d :],
        "w_q.bias": b[:d],
        "w_k.bias": b[d : 2 * d],
        "w_v.bias": b[2 * d :],
        "w_o.weight": mha.out_proj.weight.grad,
        "w_o.bias": mha.out_proj.bias.grad,
    }
