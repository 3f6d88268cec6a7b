"""Oracles for layer normalisation and the residual Add & Norm (paper §3.1; Ba et al. 2016).

* numpy float64: ``layer_norm`` (with the usual mistakes as variants: unbiased variance, eps
  outside the square root, normalising over the wrong axis, gain and bias not applied) and
  ``add_norm`` (with the variants pre-norm, missing residual, norm before the sum);
* PyTorch built-in: ``nn.LayerNorm`` with copied weight and bias.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from grader.i18n import _

LAYER_NORM_VARIANTS = ("correct", "unbiased_variance", "eps_outside_sqrt", "wrong_axis", "no_affine")
ADD_NORM_VARIANTS = ("correct", "pre_norm", "no_residual", "norm_before_sum", "no_norm")


def as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5, variant: str = "correct") -> np.ndarray:
    """weight * (x - mean) / sqrt(var + eps) + bias over the last axis, biased variance.

    ``weight``/``bias`` default to ones/zeros. ``variant`` (one of ``LAYER_NORM_VARIANTS``)
    computes what a buggy implementation returns; ``wrong_axis`` normalises over axis -2
    (the positions) instead of the features.
    """
    if variant not in LAYER_NORM_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    x = as_numpy(x)
    d = x.shape[-1]
    weight = np.ones(d) if weight is None else as_numpy(weight)
    bias = np.zeros(d) if bias is None else as_numpy(bias)
    axis = -2 if variant == "wrong_axis" else -1
    mean = x.mean(axis=axis, keepdims=True)
    centred = x - mean
    n = x.shape[axis]
    if variant == "unbiased_variance":
        with np.errstate(all="ignore"):  # d_model = 1: 0/0, as torch.var(unbiased=True) gives NaN
            var = (centred**2).sum(axis=axis, keepdims=True) / np.float64(n - 1)
    else:
        var = (centred**2).mean(axis=axis, keepdims=True)
    if variant == "eps_outside_sqrt":
        normed = centred / (np.sqrt(var) + eps)
    else:
        normed = centred / np.sqrt(var + eps)
    if variant == "no_affine":
        return normed
    return weight * normed + bias


def layer_norm_bug_outputs(x, weight, bias, eps, dtype, variants=LAYER_NORM_VARIANTS[1:]) -> dict:
    """``{student-words description: output of that buggy LayerNorm}`` for ``likely_bugs``."""
    names = {
        "unbiased_variance": _("unbiased variance (divided by d_model - 1): use var(unbiased=False) / correction=0"),
        "eps_outside_sqrt": _("eps added outside the square root: use sqrt(var + eps)"),
        "wrong_axis": _("normalised over the wrong axis: mean and variance go over the last axis (d_model)"),
        "no_affine": _("the gain `weight` and the bias `bias` are not applied"),
    }
    bugs = {}
    x_np = as_numpy(x)
    for variant in variants:
        if variant == "wrong_axis" and x_np.ndim < 2:
            continue
        with np.errstate(all="ignore"):
            out = layer_norm(x_np, weight, bias, eps, variant)
        bugs[names[variant]] = torch.from_numpy(out).to(dtype)
    return bugs


def builtin_layer_norm(weight, bias, eps: float = 1e-5, dtype=torch.float64) -> nn.LayerNorm:
    """``nn.LayerNorm(d_model, eps)`` with the given weight and bias."""
    weight = torch.as_tensor(weight)
    norm = nn.LayerNorm(weight.shape[-1], eps=eps, dtype=dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        norm.bias.copy_(torch.as_tensor(bias))
    return norm


def linear(x, weight, bias=None) -> np.ndarray:
    """x Wᵀ + b, the map of ``nn.Linear``."""
    out = as_numpy(x) @ as_numpy(weight).T
    return out if bias is None else out + as_numpy(bias)


def linear_fn(module):
    """The map of a trusted ``nn.Linear`` on numpy arrays (a ``sublayer_out_fn`` for ``add_norm``)."""
    weight, bias = module.weight.detach(), module.bias.detach()
    return lambda a: linear(a, weight, bias)


def add_norm(x, sublayer_out_fn, weight, bias, eps: float = 1e-5, variant: str = "correct") -> np.ndarray:
    """LayerNorm(x + sublayer(x)) (post-norm, paper §3.1), dropout off.

    ``sublayer_out_fn`` maps a numpy array to the sublayer's output (so that the pre-norm
    variant can feed it norm(x)).
    """
    if variant not in ADD_NORM_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    x = as_numpy(x)

    def norm(v):
        return layer_norm(v, weight, bias, eps)

    if variant == "pre_norm":
        return x + sublayer_out_fn(norm(x))
    if variant == "no_residual":
        return norm(sublayer_out_fn(x))
    if variant == "norm_before_sum":
        return norm(x) + sublayer_out_fn(x)
    if variant == "no_norm":
        return x + sublayer_out_fn(x)
    return norm(x + sublayer_out_fn(x))


# What to look at, in the tests of LayerNorm and AddNorm.
LN_HINT = _("mean and biased variance over the last axis (keepdim=True); weight * (x - mean) / sqrt(var + eps) + bias")
ADD_NORM_HINT = _("AddNorm(x, sublayer) = norm(x + dropout(sublayer(x))): residual sum first, then the layer norm")


def add_norm_bug_outputs(x, sublayer_out_fn, weight, bias, dtype, eps: float = 1e-5) -> dict:
    names = {
        _("pre-norm (x + sublayer(norm(x))): the paper normalises after the residual sum"): "pre_norm",
        _("the residual connection is missing (norm(sublayer(x)))"): "no_residual",
        _("the norm is applied to x before the sum (norm(x) + sublayer(x))"): "norm_before_sum",
        _("the layer norm is missing (x + sublayer(x))"): "no_norm",
    }
    return {
        description: torch.from_numpy(add_norm(x, sublayer_out_fn, weight, bias, eps, variant)).to(dtype)
        for description, variant in names.items()
    }
