"""Oracles for the encoder and decoder layers (paper §3.1, Figure 1).

Two independent references:

* PyTorch built-ins: ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer``
  (post-norm, ReLU, ``batch_first=True``, dropout 0) with weights copied from a state dict
  in the contract's names. The mapping between the two naming schemes lives here, one
  function per direction, and is reused by the model oracle.
* A numpy float64 re-implementation, which can also compute the outputs of the usual
  mistakes (pre-norm, missing residual, sublayers swapped, unmasked self-attention, …), so
  that a test can name the mistake a student made.

Mask convention of the contract: bool, **True = may attend**. PyTorch's built-ins use the
opposite (True = NOT allowed); the helpers below convert.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from grader.i18n import _

EPS = 1e-5

_ATTN = ("w_q", "w_k", "w_v", "w_o")
_SUBLAYERS_ENCODER = {"add_norm1": "norm1", "add_norm2": "norm2"}
_SUBLAYERS_DECODER = {"add_norm1": "norm1", "add_norm2": "norm2", "add_norm3": "norm3"}


# --------------------------------------------------------------------------- state dicts


def _randn(generator, *shape, scale=1.0):
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


def _attention_state(generator, prefix: str, d_model: int) -> dict:
    scale = 1.0 / math.sqrt(d_model)
    state = {}
    for name in _ATTN:
        state[f"{prefix}.{name}.weight"] = _randn(generator, d_model, d_model, scale=scale)
        state[f"{prefix}.{name}.bias"] = _randn(generator, d_model, scale=0.1)
    return state


def _feed_forward_state(generator, d_model: int, d_ff: int) -> dict:
    return {
        "feed_forward.w_1.weight": _randn(generator, d_ff, d_model, scale=1.0 / math.sqrt(d_model)),
        "feed_forward.w_1.bias": _randn(generator, d_ff, scale=0.1),
        "feed_forward.w_2.weight": _randn(generator, d_model, d_ff, scale=1.0 / math.sqrt(d_ff)),
        "feed_forward.w_2.bias": _randn(generator, d_model, scale=0.1),
    }


def _norm_state(generator, name: str, d_model: int) -> dict:
    # Not the default (ones, zeros), so that a norm with its gain and bias ignored shows.
    return {
        f"{name}.norm.weight": 1.0 + _randn(generator, d_model, scale=0.2),
        f"{name}.norm.bias": _randn(generator, d_model, scale=0.2),
    }


def encoder_layer_state(d_model: int, d_ff: int, seed: int, dtype=torch.float64) -> dict:
    """Random weights for one ``EncoderLayer`` under the contract's state-dict names."""
    generator = torch.Generator().manual_seed(seed)
    state = _attention_state(generator, "self_attn", d_model)
    state.update(_feed_forward_state(generator, d_model, d_ff))
    for name in _SUBLAYERS_ENCODER:
        state.update(_norm_state(generator, name, d_model))
    return {k: v.to(dtype) for k, v in state.items()}


def decoder_layer_state(d_model: int, d_ff: int, seed: int, dtype=torch.float64) -> dict:
    """Random weights for one ``DecoderLayer`` under the contract's state-dict names."""
    generator = torch.Generator().manual_seed(seed)
    state = _attention_state(generator, "self_attn", d_model)
    state.update(_attention_state(generator, "cross_attn", d_model))
    state.update(_feed_forward_state(generator, d_model, d_ff))
    for name in _SUBLAYERS_DECODER:
        state.update(_norm_state(generator, name, d_model))
    return {k: v.to(dtype) for k, v in state.items()}


def _attention_to_builtin(sd: dict, ours: str, theirs: str) -> dict:
    return {
        f"{theirs}.in_proj_weight": torch.cat(
            [sd[f"{ours}.w_q.weight"], sd[f"{ours}.w_k.weight"], sd[f"{ours}.w_v.weight"]]
        ),
        f"{theirs}.in_proj_bias": torch.cat([sd[f"{ours}.w_q.bias"], sd[f"{ours}.w_k.bias"], sd[f"{ours}.w_v.bias"]]),
        f"{theirs}.out_proj.weight": sd[f"{ours}.w_o.weight"],
        f"{theirs}.out_proj.bias": sd[f"{ours}.w_o.bias"],
    }


def _attention_from_builtin(sd: dict, theirs: str, ours: str) -> dict:
    w_q, w_k, w_v = sd[f"{theirs}.in_proj_weight"].chunk(3)
    b_q, b_k, b_v = sd[f"{theirs}.in_proj_bias"].chunk(3)
    return {
        f"{ours}.w_q.weight": w_q,
        f"{ours}.w_q.bias": b_q,
        f"{ours}.w_k.weight": w_k,
        f"{ours}.w_k.bias": b_k,
        f"{ours}.w_v.weight": w_v,
        f"{ours}.w_v.bias": b_v,
        f"{ours}.w_o.weight": sd[f"{theirs}.out_proj.weight"],
        f"{ours}.w_o.bias": sd[f"{theirs}.out_proj.bias"],
    }


def _feed_forward_to_builtin(sd: dict) -> dict:
    return {
        "linear1.weight": sd["feed_forward.w_1.weight"],
        "linear1.bias": sd["feed_forward.w_1.bias"],
        "linear2.weight": sd["feed_forward.w_2.weight"],
        "linear2.bias": sd["feed_forward.w_2.bias"],
    }


def _feed_forward_from_builtin(sd: dict) -> dict:
    return {
        "feed_forward.w_1.weight": sd["linear1.weight"],
        "feed_forward.w_1.bias": sd["linear1.bias"],
        "feed_forward.w_2.weight": sd["linear2.weight"],
        "feed_forward.w_2.bias": sd["linear2.bias"],
    }


def _norms(sd: dict, names: dict, reverse: bool) -> dict:
    out = {}
    for ours, theirs in names.items():
        for p in ("weight", "bias"):
            if reverse:
                out[f"{ours}.norm.{p}"] = sd[f"{theirs}.{p}"]
            else:
                out[f"{theirs}.{p}"] = sd[f"{ours}.norm.{p}"]
    return out


def contract_to_builtin_encoder_layer(sd: dict) -> dict:
    """``EncoderLayer`` state dict -> ``nn.TransformerEncoderLayer`` state dict."""
    out = _attention_to_builtin(sd, "self_attn", "self_attn")
    out.update(_feed_forward_to_builtin(sd))
    out.update(_norms(sd, _SUBLAYERS_ENCODER, reverse=False))
    return out


def builtin_to_contract_encoder_layer(sd: dict) -> dict:
    """``nn.TransformerEncoderLayer`` state dict -> ``EncoderLayer`` state dict."""
    out = _attention_from_builtin(sd, "self_attn", "self_attn")
    out.update(_feed_forward_from_builtin(sd))
    out.update(_norms(sd, _SUBLAYERS_ENCODER, reverse=True))
    return out


def contract_to_builtin_decoder_layer(sd: dict) -> dict:
    """``DecoderLayer`` state dict -> ``nn.TransformerDecoderLayer`` state dict."""
    out = _attention_to_builtin(sd, "self_attn", "self_attn")
    out.update(_attention_to_builtin(sd, "cross_attn", "multihead_attn"))
    out.update(_feed_forward_to_builtin(sd))
    out.update(_norms(sd, _SUBLAYERS_DECODER, reverse=False))
    return out


def builtin_to_contract_decoder_layer(sd: dict) -> dict:
    """``nn.TransformerDecoderLayer`` state dict -> ``DecoderLayer`` state dict."""
    out = _attention_from_builtin(sd, "self_attn", "self_attn")
    out.update(_attention_from_builtin(sd, "multihead_attn", "cross_attn"))
    out.update(_feed_forward_from_builtin(sd))
    out.update(_norms(sd, _SUBLAYERS_DECODER, reverse=True))
    return out


def with_prefix(sd: dict, prefix: str) -> dict:
    return {f"{prefix}{k}": v for k, v in sd.items()}


def strip_prefix(sd: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


# --------------------------------------------------------------------------- built-ins


def builtin_encoder_layer(sd: dict, d_model: int, num_heads: int, d_ff: int, *, norm_first=False, dtype=torch.float64):
    """``nn.TransformerEncoderLayer`` (post-norm unless ``norm_first``) with the contract
    state dict ``sd`` copied in. Kept in training mode with dropout 0 so that PyTorch never
    takes its fused inference fast path."""
    layer = nn.TransformerEncoderLayer(
        d_model,
        num_heads,
        d_ff,
        dropout=0.0,
        activation="relu",
        batch_first=True,
        norm_first=norm_first,
        layer_norm_eps=EPS,
        dtype=dtype,
    )
    layer.load_state_dict(contract_to_builtin_encoder_layer(sd), strict=True)
    return layer.train()


def builtin_decoder_layer(sd: dict, d_model: int, num_heads: int, d_ff: int, *, norm_first=False, dtype=torch.float64):
    """``nn.TransformerDecoderLayer`` with the contract state dict ``sd`` copied in."""
    layer = nn.TransformerDecoderLayer(
        d_model,
        num_heads,
        d_ff,
        dropout=0.0,
        activation="relu",
        batch_first=True,
        norm_first=norm_first,
        layer_norm_eps=EPS,
        dtype=dtype,
    )
    layer.load_state_dict(contract_to_builtin_decoder_layer(sd), strict=True)
    return layer.train()


def key_padding_for_builtin(src_mask: torch.Tensor) -> torch.Tensor:
    """Contract ``(B, 1, T)`` True = real -> built-in ``(B, T)`` True = ignore."""
    return ~src_mask[:, 0, :]


def attn_mask_for_builtin(mask: torch.Tensor, batch: int, num_heads: int) -> torch.Tensor:
    """Contract ``(B or 1, T_q, T_k)`` True = may attend -> built-in ``(B * h, T_q, T_k)``
    True = not allowed."""
    mask = mask.expand(batch, -1, -1)
    return (~mask).repeat_interleave(num_heads, dim=0)


def run_builtin_encoder_layer(layer, x, src_mask):
    return layer(x, src_key_padding_mask=key_padding_for_builtin(src_mask))


def run_builtin_decoder_layer(layer, x, memory, src_mask, tgt_mask, num_heads):
    return layer(
        x,
        memory,
        tgt_mask=attn_mask_for_builtin(tgt_mask, x.shape[0], num_heads),
        memory_key_padding_mask=key_padding_for_builtin(src_mask),
    )


def builtin_encoder_layer_output(sd: dict, d_model: int, num_heads: int, d_ff: int, x, src_mask) -> torch.Tensor:
    """The built-in encoder layer with the weights ``sd`` on ``x`` (in float64, no gradient)."""
    layer = builtin_encoder_layer(sd, d_model, num_heads, d_ff)
    with torch.no_grad():
        return run_builtin_encoder_layer(layer, x.double(), src_mask)


def builtin_decoder_layer_output(
    sd: dict, d_model: int, num_heads: int, d_ff: int, x, memory, src_mask, tgt_mask
) -> torch.Tensor:
    """The built-in decoder layer with the weights ``sd`` on ``x`` and ``memory`` (in float64, no gradient)."""
    layer = builtin_decoder_layer(sd, d_model, num_heads, d_ff)
    with torch.no_grad():
        return run_builtin_decoder_layer(layer, x.double(), memory.double(), src_mask, tgt_mask, num_heads)


# --------------------------------------------------------------------------- numpy


def _np(value):
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy() if value.dtype == torch.bool else value.detach().cpu().double().numpy()
    return np.asarray(value)


def numpy_state(sd: dict) -> dict:
    return {k: _np(v) for k, v in sd.items()}


def layer_norm(x, weight, bias, eps=EPS):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _linear(x, sd, prefix):
    return x @ sd[f"{prefix}.weight"].T + sd[f"{prefix}.bias"]


def multi_head_attention(sd, prefix, query, key, value, mask, num_heads, *, scaled=True):
    """numpy multi-head attention; ``mask`` bool broadcastable to ``(B, T_q, T_k)``,
    True = may attend (``None``: everything visible)."""
    batch, t_q, d_model = query.shape
    d_k = d_model // num_heads

    def heads(x, name):
        y = _linear(x, sd, f"{prefix}.{name}")
        return y.reshape(batch, -1, num_heads, d_k).transpose(0, 2, 1, 3)

    q, k, v = heads(query, "w_q"), heads(key, "w_k"), heads(value, "w_v")
    scores = np.einsum("bhqd,bhkd->bhqk", q, k)
    if scaled:
        scores = scores / math.sqrt(d_k)
    if mask is not None:
        scores = np.where(np.asarray(mask)[:, None, :, :], scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    out = np.einsum("bhqk,bhkd->bhqd", weights, v).transpose(0, 2, 1, 3).reshape(batch, t_q, d_model)
    return _linear(out, sd, f"{prefix}.w_o")


def feed_forward(sd, x):
    return _linear(np.maximum(_linear(x, sd, "feed_forward.w_1"), 0.0), sd, "feed_forward.w_2")


def _add_norm(sd, name, x, sublayer, variant):
    norm = sd[f"{name}.norm.weight"], sd[f"{name}.norm.bias"]
    if variant == "pre_norm":
        return x + sublayer(layer_norm(x, *norm))
    if variant == "no_residual":
        return layer_norm(sublayer(x), *norm)
    if variant == "no_norm":
        return x + sublayer(x)
    return layer_norm(x + sublayer(x), *norm)


ENCODER_BUGS = {
    "pre_norm": _(
        "pre-norm instead of post-norm: the paper (and this assignment) computes "
        "LayerNorm(x + Sublayer(x)), not x + Sublayer(LayerNorm(x))"
    ),
    "no_residual": _(
        "the residual connection is missing: Add & Norm is LayerNorm(x + Sublayer(x)), not LayerNorm(Sublayer(x))"
    ),
    "no_norm": _("the layer normalisation is missing: Add & Norm is LayerNorm(x + Sublayer(x))"),
    "swapped_order": _("the two sublayers run in the wrong order: self-attention first, then the feed-forward network"),
    "unmasked": _("the source mask is not passed to self-attention: padding keys must get zero weight"),
}

DECODER_BUGS = {
    "pre_norm": ENCODER_BUGS["pre_norm"],
    "no_residual": ENCODER_BUGS["no_residual"],
    "no_norm": ENCODER_BUGS["no_norm"],
    "self_unmasked": _(
        "the decoder's self-attention is not masked: pass tgt_mask so that position i sees only positions <= i"
    ),
    "cross_tgt_mask": _(
        "cross-attention is given the target mask: its keys are source positions, so it needs src_mask"
    ),
    "cross_unmasked": _("cross-attention is not masked: pass src_mask so that source padding gets zero weight"),
    "cross_on_self": _(
        "cross-attention attends to the decoder's own states: keys and values must come "
        "from memory (the encoder output)"
    ),
    "cross_values_from_self": _(
        "cross-attention takes its values from the decoder's own states: keys and "
        "values must both come from memory (cross_attn(x, memory, memory, src_mask))"
    ),
    "self_mask_is_src": _(
        "self-attention is given the source mask and cross-attention the target mask: they are swapped"
    ),
    "swapped_order": _(
        "the sublayers run in the wrong order: masked self-attention, then cross-attention, "
        "then the feed-forward network"
    ),
    "ff_first": _(
        "the feed-forward network runs before the attention sublayers: the order is masked "
        "self-attention, cross-attention, feed-forward"
    ),
}


def encoder_layer(sd, x, src_mask, num_heads, variant: str = "correct"):
    """numpy float64 ``EncoderLayer`` forward (or a known-wrong ``variant``, see ``ENCODER_BUGS``)."""
    sd, x, mask = numpy_state(sd), _np(x), _np(src_mask)
    if variant == "unmasked":
        mask = None

    def attend(h):
        return multi_head_attention(sd, "self_attn", h, h, h, mask, num_heads)

    def ff(h):
        return feed_forward(sd, h)

    if variant == "swapped_order":
        x = _add_norm(sd, "add_norm1", x, ff, "correct")
        return _add_norm(sd, "add_norm2", x, attend, "correct")
    x = _add_norm(sd, "add_norm1", x, attend, variant)
    return _add_norm(sd, "add_norm2", x, ff, variant)


def decoder_layer(sd, x, memory, src_mask, tgt_mask, num_heads, variant: str = "correct"):
    """numpy float64 ``DecoderLayer`` forward (or a known-wrong ``variant``, see
    ``DECODER_BUGS``). Variants that cannot be computed for these shapes return ``None``."""
    sd, x, memory = numpy_state(sd), _np(x), _np(memory)
    src_mask, tgt_mask = _np(src_mask), _np(tgt_mask)
    self_mask, cross_mask, cross_kv = tgt_mask, src_mask, memory
    if variant == "self_unmasked":
        self_mask = None
    elif variant == "cross_tgt_mask":
        if tgt_mask.shape[-1] != memory.shape[1]:
            return None
        cross_mask = tgt_mask
    elif variant == "cross_unmasked":
        cross_mask = None
    elif variant == "cross_on_self":
        cross_kv, cross_mask = x, tgt_mask
    elif variant == "cross_values_from_self":
        if x.shape[1] != memory.shape[1]:
            return None
    elif variant == "self_mask_is_src":
        if tgt_mask.shape[-1] != memory.shape[1]:
            return None
        self_mask, cross_mask = src_mask, tgt_mask

    def self_attend(h):
        return multi_head_attention(sd, "self_attn", h, h, h, self_mask, num_heads)

    def cross_attend(h):
        kv = h if variant == "cross_on_self" else cross_kv
        values = h if variant == "cross_values_from_self" else kv
        return multi_head_attention(sd, "cross_attn", h, kv, values, cross_mask, num_heads)

    def ff(h):
        return feed_forward(sd, h)

    step = "correct" if variant not in ("pre_norm", "no_residual", "no_norm") else variant
    order = [self_attend, cross_attend, ff]
    if variant == "swapped_order":
        order = [cross_attend, self_attend, ff]
    elif variant == "ff_first":
        order = [ff, self_attend, cross_attend]
    for name, sublayer in zip(("add_norm1", "add_norm2", "add_norm3"), order):
        x = _add_norm(sd, name, x, sublayer, step)
    return x


def encoder_bug_outputs(sd, x, src_mask, num_heads, dtype) -> dict:
    """``{student-words bug: output}`` for ``likely_bugs``."""
    return {
        text: torch.from_numpy(encoder_layer(sd, x, src_mask, num_heads, name)).to(dtype)
        for name, text in ENCODER_BUGS.items()
    }


def decoder_bug_outputs(sd, x, memory, src_mask, tgt_mask, num_heads, dtype) -> dict:
    out = {}
    for name, text in DECODER_BUGS.items():
        value = decoder_layer(sd, x, memory, src_mask, tgt_mask, num_heads, name)
        if value is not None:
            out[text] = torch.from_numpy(value).to(dtype)
    return out


# --------------------------------------------------------------------------- naming a crash


def name_decoder_crash(layer, sd, num_heads, dtype, error, *, t_src, t_tgt, what, hint="", case=""):
    """The student's ``DecoderLayer`` raised ``error`` on a batch whose source and target lengths
    differ: the usual cause is a target-length tensor (tgt_mask, or x as the values) reaching the
    cross-attention, which only fails when the lengths differ. Run the layer on a batch with equal
    lengths (and a padded source), where those mistakes run, and raise a ``CheckFailure`` naming
    the one whose output it matches. Returns quietly when none matches (the caller re-raises)."""
    from tests.support.checks import CheckFailure

    if t_src == t_tgt:
        return
    d_model = sd["self_attn.w_q.weight"].shape[0]
    generator = torch.Generator().manual_seed(7)
    t = 5
    x = torch.randn(2, t, d_model, generator=generator, dtype=torch.float64).to(dtype)
    memory = torch.randn(2, t, d_model, generator=generator, dtype=torch.float64).to(dtype)
    src_mask = torch.tensor([[[True] * t], [[True, True, False, False, False]]])
    tgt_mask = torch.tril(torch.ones(t, t, dtype=torch.bool)).unsqueeze(0)
    try:
        with torch.no_grad():
            probe = layer(x, memory, src_mask, tgt_mask)
        probe = torch.as_tensor(probe).detach().double()
    except Exception:
        return
    for bug, candidate in decoder_bug_outputs(sd, x, memory, src_mask, tgt_mask, num_heads, torch.float64).items():
        if probe.shape == candidate.shape and torch.allclose(probe, candidate, rtol=1e-4, atol=1e-5):
            raised = type(error).__name__ + (": " + str(error).splitlines()[0] if str(error) else "")
            details = [
                "  "
                + _(
                    "it raised {error} with source length {t_src} and target length {t_tgt}; "
                    "with equal lengths it runs and its output is what this bug gives",
                    error=raised,
                    t_src=t_src,
                    t_tgt=t_tgt,
                )
            ]
            raise CheckFailure(what, bug, details=details, hint=hint, case=case, likely_bug=True) from None
