"""Oracles for the position-wise feed-forward network (paper §3.3, equation 2).

* numpy float64: ``feed_forward`` = relu(x W1ᵀ + b1) W2ᵀ + b2, with the usual mistakes as
  variants (no ReLU, ReLU after w_2 as well / instead);
* PyTorch built-in: ``nn.Sequential(nn.Linear, nn.ReLU, nn.Linear)`` with copied weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from grader.i18n import _

FFN_VARIANTS = ("correct", "no_relu", "relu_after_w2", "relu_only_after_w2")
STATE_KEYS = ("w_1.weight", "w_1.bias", "w_2.weight", "w_2.bias")


def as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def random_ffn_state(d_model: int, d_ff: int, seed: int, dtype=torch.float64) -> dict:
    """A state dict in the contract's names from its own seeded generator. The biases are
    large enough that a good share of the hidden units is negative before the ReLU."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, scale):
        return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).to(dtype)

    return {
        "w_1.weight": randn(d_ff, d_model, scale=1.0 / math.sqrt(d_model)),
        "w_1.bias": randn(d_ff, scale=0.5),
        "w_2.weight": randn(d_model, d_ff, scale=1.0 / math.sqrt(d_ff)),
        "w_2.bias": randn(d_model, scale=0.5),
    }


def feed_forward(state, x, variant: str = "correct") -> np.ndarray:
    """FFN(x) = max(0, x W_1ᵀ + b_1) W_2ᵀ + b_2 in numpy float64 (dropout off)."""
    if variant not in FFN_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    x = as_numpy(x)
    w1, b1, w2, b2 = (as_numpy(state[key]) for key in STATE_KEYS)
    hidden = x @ w1.T + b1
    if variant in ("correct", "relu_after_w2"):
        hidden = np.maximum(hidden, 0.0)
    out = hidden @ w2.T + b2
    if variant in ("relu_after_w2", "relu_only_after_w2"):
        out = np.maximum(out, 0.0)
    return out


# What to look at, and how an input reads, in the tests of the feed-forward network.
FFN_HINT = _("FFN(x) = w_2(dropout(relu(w_1(x)))), with w_1 = nn.Linear(d_model, d_ff), w_2 = nn.Linear(d_ff, d_model)")


def ffn_case(d_model, d_ff, x, dtype=torch.float64) -> str:
    return _(
        "PositionwiseFeedForward(d_model={d_model}, d_ff={d_ff}) on an input of shape {shape}, {dtype}",
        d_model=d_model,
        d_ff=d_ff,
        shape=tuple(x.shape),
        dtype=dtype,
    )


def ffn_bug_outputs(state, x, dtype) -> dict:
    names = {
        _("the ReLU is missing: FFN(x) = max(0, x W1 + b1) W2 + b2"): "no_relu",
        _("a ReLU is applied to the output of w_2 as well: the output must be able to go negative"): "relu_after_w2",
        _("the ReLU comes after w_2 instead of between w_1 and w_2"): "relu_only_after_w2",
    }
    return {
        description: torch.from_numpy(feed_forward(state, x, variant)).to(dtype)
        for description, variant in names.items()
    }


def looks_like_dropout_of(actual, clean, p: float) -> bool:
    """Whether ``actual`` is what ``nn.Dropout(p)`` in training mode makes of ``clean``: every
    entry either 0 or ``clean / (1 - p)``, and not ``clean`` itself (the signature of a dropout
    applied to the output instead of the hidden activations, when the correct output is ``clean``)."""
    actual, clean = torch.as_tensor(actual).detach().double(), torch.as_tensor(clean).detach().double()
    if actual.shape != clean.shape or not 0.0 < p < 1.0 or torch.allclose(actual, clean):
        return False
    dropped = actual == 0
    kept = torch.isclose(actual, clean / (1.0 - p), rtol=1e-6, atol=1e-9)
    return bool((dropped | kept).all())


def builtin_ffn(state, dtype=torch.float64) -> nn.Sequential:
    """``nn.Sequential(Linear(d_model, d_ff), ReLU(), Linear(d_ff, d_model))`` with the
    contract's weights (index 0 = w_1, index 2 = w_2)."""
    d_ff, d_model = state["w_1.weight"].shape
    net = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model)).to(dtype)
    net.load_state_dict(
        {
            "0.weight": state["w_1.weight"],
            "0.bias": state["w_1.bias"],
            "2.weight": state["w_2.weight"],
            "2.bias": state["w_2.bias"],
        },
        strict=True,
    )
    return net.eval()
