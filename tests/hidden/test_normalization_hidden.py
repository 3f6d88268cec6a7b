"""Part `normalization` (hidden): LayerNorm and AddNorm (paper §3.1 "Add & Norm"; Ba et al.
2016) — edge cases (d_model = 1, constant rows, huge inputs), more eps values and shapes,
gradients, other sublayers.

Tolerances: float64 rtol 1e-9 / atol 1e-10, float32 rtol 1e-4 / atol 1e-5 unless stated.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from grader.i18n import _
from tests.support.builders import affine, linear_module, make_add_norm, make_layer_norm
from tests.support.checks import assert_close, check, tolerance
from tests.support.likely_bugs import distinct_bugs
from tests.support.oracles import normalization as oracle
from tests.support.strategies import dtypes, seeds, tensor

SUBLAYER_NAMES = {
    "linear": "nn.Linear",
    "sequential": "nn.Sequential(Linear, ReLU, Linear)",
    "tanh": "nn.Tanh()",
    "relu": "nn.ReLU()",
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layernorm_single_feature_gives_the_bias(impl, dtype):
    weight, bias = torch.tensor([2.5], dtype=torch.float64), torch.tensor([-0.75], dtype=torch.float64)
    norm = make_layer_norm(impl, 1, dtype, weight=weight, bias=bias)
    x = tensor((3, 4, 1), 1, dtype, scale=5.0)
    out = norm(x)
    assert_close(
        out,
        torch.full((3, 4, 1), -0.75, dtype=dtype),
        what=_("LayerNorm output with a single feature (x - mean is 0, so it must be the bias)"),
        case=_(
            "LayerNorm(1) with weight 2.5 and bias -0.75, on an input of shape {shape}, {dtype}",
            shape=tuple(x.shape),
            dtype=dtype,
        ),
        hint=_("biased variance (correction=0): with one feature it is 0, not NaN"),
        **tolerance(dtype),
    )


# Multiples of 1/4: the mean of a constant row is then exact in float32 as well.
@given(d=st.integers(2, 10), dtype=dtypes, seed=seeds, value=st.integers(-400, 400).map(lambda i: i / 4))
def test_layernorm_constant_rows_give_the_bias(impl, d, dtype, seed, value):
    weight, bias = affine(d, seed)
    norm = make_layer_norm(impl, d, dtype, weight=weight, bias=bias)
    x = torch.full((2, 3, d), value, dtype=dtype)
    assert_close(
        norm(x),
        bias.to(dtype).expand(2, 3, d),
        what=_("LayerNorm output on constant rows (it must be the bias)"),
        case=_(
            "LayerNorm({d}) with a random weight and bias, on rows of shape {shape} filled with {value}, {dtype}",
            d=d,
            shape=tuple(x.shape),
            value=f"{value:g}",
            dtype=dtype,
        ),
        hint=_("a constant row has variance 0: sqrt(0 + eps) keeps the division finite"),
        rtol=1e-4,
        atol=1e-4 if dtype == torch.float32 else 1e-9,
    )


@given(
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
    d=st.integers(1, 40),
    dtype=dtypes,
    seed=seeds,
    eps=st.sampled_from([1e-5, 1e-6, 1e-3, 1e-1, 1e-12]),
    scale=st.sampled_from([1e-3, 0.1, 1.0, 100.0]),
)
def test_layernorm_more_shapes_and_eps_values_match_nn_layernorm(impl, lead, d, dtype, seed, eps, scale):
    weight, bias = affine(d, seed + 2)
    x = tensor(lead + (d,), seed, dtype, scale=scale) + tensor(lead + (1,), seed + 1, dtype, scale=scale)
    out = make_layer_norm(impl, d, dtype, eps=eps, weight=weight, bias=bias)(x)
    with torch.no_grad():
        expected = oracle.builtin_layer_norm(weight, bias, eps)(x.double()).to(dtype)
    # float32 with eps = 1e-12 and tiny variances: rounding of (x - mean) dominates.
    tol = {"rtol": 1e-3, "atol": 1e-4} if dtype == torch.float32 else tolerance(dtype)
    assert_close(
        out,
        expected,
        what=_("LayerNorm output vs nn.LayerNorm"),
        case=_(
            "LayerNorm({d}, eps={eps}) with a random weight and bias, on an input of shape {shape} and scale "
            "{scale}, {dtype}",
            d=d,
            eps=f"{eps:g}",
            shape=tuple(x.shape),
            scale=f"{scale:g}",
            dtype=dtype,
        ),
        hint=oracle.LN_HINT,
        **tol,
        likely_bugs=distinct_bugs(oracle.layer_norm_bug_outputs(x, weight, bias, eps, dtype), expected),
    )


def test_layernorm_huge_inputs_stay_finite(impl):
    d = 16
    weight, bias = affine(d, 3)
    x = tensor((4, 8, d), 4, scale=1e4) + 1e5
    for dtype in (torch.float32, torch.float64):
        out = make_layer_norm(impl, d, dtype, weight=weight, bias=bias)(x.to(dtype))
        case = _(
            "LayerNorm({d}) with a random weight and bias, on an input of shape {shape} with entries about 1e5, "
            "{dtype}",
            d=d,
            shape=tuple(x.shape),
            dtype=dtype,
        )
        check(
            bool(torch.isfinite(out).all()),
            _("NaN or inf in the output for large inputs"),
            _("compute the variance of the centred values, mean((x - mean)^2)"),
            case=case,
        )
        with torch.no_grad():
            expected = oracle.builtin_layer_norm(weight, bias)(x.to(dtype).double()).to(dtype)
        assert_close(
            out,
            expected,
            what=_("LayerNorm output on large inputs vs nn.LayerNorm"),
            case=case,
            hint=oracle.LN_HINT,
            **({"rtol": 1e-3, "atol": 1e-3} if dtype == torch.float32 else tolerance(dtype)),
        )


@given(d=st.integers(1, 10), dtype=dtypes, seed=seeds, eps=st.sampled_from([1e-5, 1e-3]))
def test_layernorm_gradients_match_nn_layernorm(impl, d, dtype, seed, eps):
    weight, bias = affine(d, seed + 2)
    norm = make_layer_norm(impl, d, dtype, eps=eps, weight=weight, bias=bias)
    x, upstream = tensor((2, 3, d), seed, dtype, scale=0.2), tensor((2, 3, d), seed + 1, dtype)
    arg_grads, param_grads = impl.gradients(norm, [x], upstream)
    builtin = oracle.builtin_layer_norm(weight, bias, eps)
    leaf = x.double().requires_grad_(True)
    (builtin(leaf) * upstream.double()).sum().backward()
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else tolerance(dtype)
    case = _(
        "LayerNorm({d}, eps={eps}) with a random weight and bias, on an input of shape {shape}, {dtype}",
        d=d,
        eps=f"{eps:g}",
        shape=tuple(x.shape),
        dtype=dtype,
    )
    assert_close(
        arg_grads[0],
        leaf.grad.to(dtype),
        what=_("LayerNorm gradient with respect to x"),
        case=case,
        hint=_("the mean and the variance depend on x too: let autograd see them"),
        **tol,
    )
    for name, param in (("weight", builtin.weight), ("bias", builtin.bias)):
        check(
            param_grads.get(name) is not None,
            _("no gradient reached LayerNorm.{name}", name=name),
            _("use self.weight and self.bias in forward"),
            case=case,
        )
        assert_close(
            param_grads[name],
            param.grad.to(dtype),
            what=_("LayerNorm gradient with respect to {name}", name=name),
            case=case,
            **tol,
        )


def test_layernorm_state_dict_roundtrip_and_shapes(impl):
    for d in (1, 3, 64):
        norm = impl.normalization.LayerNorm(d, eps=1e-6)
        shapes = {name: tuple(value.shape) for name, value in norm.state_dict().items()}
        check(
            shapes == {"weight": (d,), "bias": (d,)},
            _("the state_dict holds {shapes}, expected weight and bias of shape ({d},)", shapes=shapes, d=d),
            _("weight = nn.Parameter(torch.ones(d_model)), bias = nn.Parameter(torch.zeros(d_model))"),
            case=_("LayerNorm({d}, eps={eps})", d=d, eps="1e-6"),
        )


# --------------------------------------------------------------------------- AddNorm


@given(
    b=st.integers(1, 3),
    t=st.integers(1, 6),
    d=st.integers(1, 12),
    dtype=dtypes,
    seed=seeds,
    kind=st.sampled_from(["linear", "sequential", "tanh", "relu"]),
)
def test_addnorm_with_other_sublayers(impl, b, t, d, dtype, seed, kind):
    weight, bias = affine(d, seed + 3)
    add_norm = make_add_norm(impl, d, dtype, weight, bias, dropout=0.3)
    x = tensor((b, t, d), seed, dtype, scale=2.0)
    if kind == "linear":
        lin = linear_module(d, d, seed + 5, dtype)
        sublayer, fn = lin, oracle.linear_fn(lin)
    elif kind == "sequential":
        l1, l2 = linear_module(d, 3 * d, seed + 5, dtype), linear_module(3 * d, d, seed + 7, dtype)
        sublayer = nn.Sequential(l1, nn.ReLU(), l2)

        def fn(a):
            hidden = np.maximum(oracle.linear(a, l1.weight.detach(), l1.bias.detach()), 0.0)
            return oracle.linear(hidden, l2.weight.detach(), l2.bias.detach())
    elif kind == "tanh":
        sublayer, fn = nn.Tanh(), np.tanh
    else:
        sublayer, fn = nn.ReLU(), (lambda a: np.maximum(a, 0.0))
    out = add_norm(x, sublayer)
    expected = torch.from_numpy(oracle.add_norm(x, fn, weight, bias)).to(dtype)
    assert_close(
        out,
        expected,
        what=_("AddNorm output vs numpy float64"),
        case=_(
            "AddNorm({d}) around the sublayer {sublayer}, in eval mode, on an input of shape {shape}, {dtype}",
            d=d,
            sublayer=SUBLAYER_NAMES[kind],
            shape=tuple(x.shape),
            dtype=dtype,
        ),
        hint=oracle.ADD_NORM_HINT,
        **tolerance(dtype),
        likely_bugs=distinct_bugs(
            oracle.add_norm_bug_outputs(x, fn, weight, bias, dtype), expected, **tolerance(dtype)
        ),
    )


def test_addnorm_gradients_match_autograd_reference(impl):
    d = 6
    weight, bias = affine(d, 40)
    add_norm = make_add_norm(impl, d, torch.float64, weight, bias)
    lin = linear_module(d, d, 41, torch.float64)
    x, upstream = tensor((2, 4, d), 42), tensor((2, 4, d), 43)
    arg_grads, param_grads = impl.gradients(add_norm, [x, lin], upstream)
    leaf = x.clone().requires_grad_(True)
    w, b_ = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    ref = torch.nn.functional.layer_norm(leaf + lin(leaf), (d,), w, b_, 1e-5)
    (ref * upstream).sum().backward()
    case = _(
        "AddNorm({d}) around an nn.Linear sublayer, on an input of shape {shape}, {dtype}",
        d=d,
        shape=tuple(x.shape),
        dtype=torch.float64,
    )
    assert_close(
        arg_grads[0],
        leaf.grad,
        what=_("AddNorm gradient with respect to x (through the residual and the sublayer)"),
        case=case,
        hint=oracle.ADD_NORM_HINT,
        **tolerance(torch.float64),
    )
    for name, grad in (("norm.weight", w.grad), ("norm.bias", b_.grad)):
        check(
            param_grads.get(name) is not None,
            _("no gradient reached AddNorm.{name}", name=name),
            _("call self.norm (a LayerNorm) in forward"),
            case=case,
        )
        assert_close(
            param_grads[name],
            grad,
            what=_("AddNorm gradient with respect to {name}", name=name),
            case=case,
            **tolerance(torch.float64),
        )


def test_addnorm_dropout_extremes_in_training_mode(impl):
    d = 8
    weight, bias = affine(d, 50)
    x = tensor((3, 5, d), 51)
    lin = linear_module(d, d, 52, torch.float64)
    fn = oracle.linear_fn(lin)
    # p = 1: the sublayer's output is dropped entirely, leaving norm(x).
    add_norm = make_add_norm(impl, d, torch.float64, weight, bias, dropout=1.0)
    add_norm.train()
    assert_close(
        add_norm(x, lin),
        torch.from_numpy(oracle.layer_norm(x, weight, bias)),
        **tolerance(torch.float64),
        what=_("AddNorm output with the sublayer's output all dropped (it must be norm(x))"),
        case=_(
            "AddNorm({d}, dropout=1.0) around an nn.Linear sublayer, in training mode, on an input of shape {shape}",
            d=d,
            shape=tuple(x.shape),
        ),
        hint=_("norm(x + dropout(sublayer(x))): the dropout wraps the sublayer's output only"),
        likely_bugs={
            _("the dropout is applied to the residual sum (or to x) instead of the sublayer output"): torch.from_numpy(
                oracle.layer_norm(np.zeros_like(x.numpy()), weight, bias)
            )
        },
    )
    # p = 0: training mode changes nothing.
    add_norm = make_add_norm(impl, d, torch.float64, weight, bias, dropout=0.0)
    add_norm.train()
    assert_close(
        add_norm(x, lin),
        torch.from_numpy(oracle.add_norm(x, fn, weight, bias)),
        **tolerance(torch.float64),
        what=_("AddNorm output in training mode with dropout 0"),
        case=_(
            "AddNorm({d}, dropout=0.0) around an nn.Linear sublayer, in training mode, on an input of shape {shape}",
            d=d,
            shape=tuple(x.shape),
        ),
        hint=oracle.ADD_NORM_HINT,
    )
