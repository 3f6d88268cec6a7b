"""The student's modules as every test builds them: from ``impl``, with weights chosen by the
tests (the oracles' seeded generators, never the module's own initialisation), loaded under the
contract's names (``strict=True`` checks them), in evaluation mode; and the trusted modules and
parameters that go with them.

Two ways of reaching a dtype, kept as the tests have always used them: the sublayers
(``make_mha``, ``make_ffn``, ``make_layer_norm``, ``make_add_norm``) are moved with
``.to(dtype)``; layers and stacks (``load_weights``, ``make_model``) are made float64 with
``.double()`` and otherwise left as built, so that a hard-coded float64 shows in float32.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from grader.i18n import _
from tests.support.checks import check
from tests.support.oracles import attention as attention_oracle
from tests.support.oracles import feed_forward as ffn_oracle
from tests.support.oracles import model as model_oracle
from tests.support.strategies import causal, int_tensor, key_padding_mask, tensor

# --------------------------------------------------------------------------- sublayers


def make_mha(impl, d_model, num_heads, dtype, seed, dropout=0.0, state=None):
    """The student's MultiHeadAttention with the weights ``state`` (default: random ones from ``seed``)."""
    state = attention_oracle.random_mha_state(d_model, seed, dtype) if state is None else state
    mha = impl.attention.MultiHeadAttention(d_model, num_heads, dropout=dropout)
    mha.to(dtype)
    mha.load_state_dict(state, strict=True)
    mha.eval()
    return mha, state


def make_ffn(impl, d_model, d_ff, dtype, seed, dropout=0.0, state=None):
    """The student's PositionwiseFeedForward with the weights ``state`` (default: random ones from ``seed``)."""
    state = ffn_oracle.random_ffn_state(d_model, d_ff, seed, dtype) if state is None else state
    ffn = impl.feed_forward.PositionwiseFeedForward(d_model, d_ff, dropout=dropout)
    ffn.to(dtype)
    ffn.load_state_dict(state, strict=True)
    ffn.eval()
    return ffn, state


def affine(d, seed, dtype=torch.float64):
    """A LayerNorm gain and bias far from (ones, zeros), so that ignoring them shows."""
    return (1.0 + tensor((d,), seed, dtype, scale=0.5)), tensor((d,), seed + 1, dtype, scale=0.5)


def make_layer_norm(impl, d, dtype, eps=None, weight=None, bias=None):
    """The student's LayerNorm(d) (its default eps unless ``eps``), with ``weight`` and ``bias`` if given."""
    norm = impl.normalization.LayerNorm(d) if eps is None else impl.normalization.LayerNorm(d, eps=eps)
    norm.to(dtype)
    if weight is not None:
        norm.load_state_dict({"weight": weight.to(dtype), "bias": bias.to(dtype)}, strict=True)
    return norm


def make_add_norm(impl, d, dtype, weight, bias, dropout=0.0):
    """The student's AddNorm(d) with the norm's ``weight`` and ``bias``, in evaluation mode."""
    add_norm = impl.normalization.AddNorm(d, dropout=dropout)
    add_norm.to(dtype)
    add_norm.load_state_dict({"norm.weight": weight.to(dtype), "norm.bias": bias.to(dtype)}, strict=True)
    add_norm.eval()
    return add_norm


def linear_module(d_in, d_out, seed, dtype):
    """A trusted nn.Linear (a sublayer for AddNorm) with weights chosen here."""
    linear = nn.Linear(d_in, d_out).to(dtype)
    with torch.no_grad():
        linear.weight.copy_(tensor((d_out, d_in), seed, scale=1.0 / np.sqrt(d_in)))
        linear.bias.copy_(tensor((d_out,), seed + 1, scale=0.5))
    return linear


def pe_buffer(module) -> torch.Tensor:
    """The ``pe`` buffer of the student's PositionalEncoding (a failed check when there is none)."""
    buffers = dict(module.named_buffers())
    check(
        "pe" in buffers,
        _("PositionalEncoding has no buffer called pe (its buffers: {buffers})", buffers=sorted(buffers)),
        _("register the table with self.register_buffer('pe', table)"),
    )
    return buffers["pe"]


# --------------------------------------------------------------------------- layers and the model


def load_weights(module, state, dtype):
    """``module`` (a layer or a stack from ``impl``) in ``dtype`` with the weights ``state``, in evaluation mode."""
    if dtype == torch.float64:
        module.double()
    module.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    module.eval()
    return module


def make_model(impl, cfg, seed, dtype=torch.float64, dropout=0.0):
    """The student's Transformer for ``cfg`` (an ``oracles.model.Config``) with the oracle's weights."""
    model = impl.model.Transformer(**cfg.kwargs(dropout))
    state = model_oracle.transformer_state(cfg, seed)
    return load_weights(model, state, dtype), state


def batch_inputs(cfg, seed, batch=2, t_src=5, t_tgt=4):
    """Right-padded token batches for ``cfg`` and their masks (True = may attend):
    ``(src, tgt, src_mask (B, 1, T_src), tgt_mask (B, T_tgt, T_tgt))``."""
    src = int_tensor((batch, t_src), seed, 0, cfg.src_vocab)
    src[src == cfg.pad_id] = (cfg.pad_id + 1) % cfg.src_vocab
    src_mask = key_padding_mask(batch, t_src, seed + 1)
    src[~src_mask[:, 0, :]] = cfg.pad_id
    tgt = int_tensor((batch, t_tgt), seed + 2, 0, cfg.tgt_vocab)
    tgt[tgt == cfg.pad_id] = (cfg.pad_id + 1) % cfg.tgt_vocab
    tgt_real = key_padding_mask(batch, t_tgt, seed + 3)
    tgt[~tgt_real[:, 0, :]] = cfg.pad_id
    return src, tgt, src_mask, tgt_real & causal(t_tgt)
