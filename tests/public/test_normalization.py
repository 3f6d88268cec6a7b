"""Part `normalization`: LayerNorm and AddNorm (paper §3.1 "Add & Norm"; Ba et al. 2016).

LayerNorm(x) = weight * (x - mean) / sqrt(var + eps) + bias over the last axis (biased
variance); AddNorm(x, sublayer) = LayerNorm(x + Dropout(sublayer(x))) (post-norm).
References: a numpy float64 oracle and ``nn.LayerNorm`` with the same weight and bias.
Tolerances: float64 rtol 1e-9 / atol 1e-10, float32 rtol 1e-4 / atol 1e-5 unless a test
states otherwise (statistics of float32 outputs: atol 1e-4).
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from grader.i18n import _
from tests.support.builders import affine, linear_module, make_add_norm, make_layer_norm
from tests.support.checks import assert_close, assert_equal, check, tolerance
from tests.support.likely_bugs import distinct_bugs
from tests.support.oracles import normalization as oracle
from tests.support.strategies import dtypes, seeds, tensor

leading_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
eps_values = st.sampled_from([1e-5, 1e-6, 1e-3])


def rows_with_variance(shape, seed, dtype, std, shift):
    """Rows with (biased) standard deviation exactly ``std`` (in float64) and mean ``shift``."""
    x = tensor(shape, seed)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, correction=0, keepdim=True).clamp_min(1e-12)
    return (x * std + shift).to(dtype)


def wrong_axis_statistics(x, eps=1e-5):
    """``{bug: (mean, variance) of each output row}`` for a LayerNorm (default weight and bias)
    whose statistics go over another axis than the last one."""
    x = x.detach().double().numpy()
    found = {}
    for axis in range(x.ndim - 1):
        out = np.moveaxis(oracle.layer_norm(np.moveaxis(x, axis, -1), eps=eps), -1, axis)
        bug = _(
            "normalised over axis {axis} instead of the last axis: mean and variance go over the last axis (d_model)",
            axis=axis,
        )
        found[bug] = (torch.from_numpy(out.mean(-1)), torch.from_numpy(out.var(-1)))
    return found


# --------------------------------------------------------------------------- LayerNorm


@given(lead=leading_shapes, d=st.integers(2, 12), dtype=dtypes, seed=seeds, std=st.sampled_from([1.0, 10.0, 300.0]))
def test_layernorm_default_parameters_give_mean_0_variance_1(impl, lead, d, dtype, seed, std):
    shift = tensor(lead + (1,), seed + 1, scale=3.0 * std)
    x = rows_with_variance(lead + (d,), seed, dtype, std, shift)
    out = make_layer_norm(impl, d, dtype)(x)
    case = _(
        "LayerNorm({d}) with the default weight and bias, on an input of shape {shape} whose rows have "
        "standard deviation {std}, {dtype}",
        d=d,
        shape=tuple(x.shape),
        std=f"{std:g}",
        dtype=dtype,
    )
    check(
        tuple(out.shape) == tuple(x.shape) and out.dtype == dtype,
        _(
            (
                "the output has shape {shape} and dtype {dtype}, expected the input's {expected_shape} and "
                "{expected_dtype}"
            ),
            shape=tuple(out.shape),
            dtype=out.dtype,
            expected_shape=tuple(x.shape),
            expected_dtype=dtype,
        ),
        _("same shape and dtype as x"),
        case=case,
    )
    stat_tol = {"rtol": 0.0, "atol": 1e-4 if dtype == torch.float32 else 1e-9}
    o = out.double()
    wrong_axes = wrong_axis_statistics(x)
    expected_mean = torch.zeros(lead, dtype=torch.float64)
    assert_close(
        o.mean(-1),
        expected_mean,
        what=_("mean of each output row"),
        case=case,
        hint=oracle.LN_HINT,
        **stat_tol,
        check_dtype=False,
        likely_bugs=distinct_bugs({bug: mean for bug, (mean, _var) in wrong_axes.items()}, expected_mean),
    )
    expected_var = std**2 / (std**2 + 1e-5)  # eps = 1e-5 shrinks the variance a little
    # Rows of std 1 cannot tell eps outside the square root from a division by the variance.
    eps_outside, by_variance = (
        torch.full(lead, std**2 / (std + 1e-5) ** 2),
        torch.full(lead, std**2 / (std**2 + 1e-5) ** 2),
    )
    if torch.allclose(eps_outside, by_variance, rtol=1e-4, atol=1e-4):
        scale_bugs = {
            _(
                "eps added outside the square root, or a division by the variance instead of the standard "
                "deviation: use sqrt(var + eps)"
            ): eps_outside
        }
    else:
        scale_bugs = {
            _("eps added outside the square root: use sqrt(var + eps)"): eps_outside,
            _("divided by the variance instead of the standard deviation: use sqrt(var + eps)"): by_variance,
        }
    assert_close(
        o.var(-1, correction=0),
        torch.full(lead, expected_var, dtype=torch.float64),
        check_dtype=False,
        what=_("(biased) variance of each output row"),
        case=case,
        hint=oracle.LN_HINT,
        **stat_tol,
        likely_bugs={
            _("unbiased variance (divided by d_model - 1): use var(unbiased=False) / correction=0"): torch.full(
                lead, (d - 1) / d * expected_var
            ),
            **scale_bugs,
            **distinct_bugs(
                {bug: var for bug, (_mean, var) in wrong_axes.items()},
                torch.full(lead, expected_var, dtype=torch.float64),
            ),
        },
    )


@given(b=st.integers(1, 3), t=st.integers(1, 5), d=st.integers(2, 10), dtype=dtypes, seed=seeds)
def test_layernorm_invariant_to_shift_and_positive_scale_of_each_row(impl, b, t, d, dtype, seed):
    weight, bias = affine(d, seed + 5)
    norm = make_layer_norm(impl, d, dtype, weight=weight, bias=bias)
    x = rows_with_variance((b, t, d), seed, torch.float64, 10.0, 0.0)  # variance 100: eps is negligible
    generator = torch.Generator().manual_seed(seed)
    scale = torch.empty(b, t, 1, dtype=torch.float64).uniform_(1.0, 20.0, generator=generator)
    shift = torch.empty(b, t, 1, dtype=torch.float64).uniform_(-20.0, 20.0, generator=generator)
    out = norm(x.to(dtype))
    moved = norm((x * scale + shift).to(dtype))
    # |LN(a x + b) - LN(x)| <= |weight| * |x̂| * eps / (2 var) ~ 1e-7 here.
    tol = {"rtol": 1e-4, "atol": 5e-5} if dtype == torch.float32 else {"rtol": 1e-6, "atol": 1e-6}
    assert_close(
        moved,
        out,
        **tol,
        what=_("LayerNorm of each row shifted and scaled (a x + b, a > 0) vs LayerNorm of x"),
        case=_(
            "LayerNorm({d}) with a random weight and bias, on an input of shape {shape}, {dtype}; "
            "a and b differ from row to row",
            d=d,
            shape=(b, t, d),
            dtype=dtype,
        ),
        hint=_("normalise each position over its own d_model features (the last axis)"),
    )


@given(
    lead=leading_shapes,
    d=st.integers(2, 12),
    dtype=dtypes,
    seed=seeds,
    eps=eps_values,
    scale=st.sampled_from([0.01, 1.0, 30.0]),
)
def test_layernorm_matches_nn_layernorm_and_numpy(impl, lead, d, dtype, seed, eps, scale):
    weight, bias = affine(d, seed + 7)
    x = tensor(lead + (d,), seed, dtype, scale=scale) + tensor(lead + (1,), seed + 1, dtype, scale=scale)
    out = make_layer_norm(impl, d, dtype, eps=eps, weight=weight, bias=bias)(x)
    expected = torch.from_numpy(oracle.layer_norm(x, weight, bias, eps)).to(dtype)
    case = _(
        "LayerNorm({d}, eps={eps}) with a random weight and bias, on an input of shape {shape} and scale {scale}, "
        "{dtype}",
        d=d,
        eps=f"{eps:g}",
        shape=tuple(x.shape),
        scale=f"{scale:g}",
        dtype=dtype,
    )
    assert_close(
        out,
        expected,
        what=_("LayerNorm output vs numpy float64"),
        case=case,
        hint=oracle.LN_HINT,
        **tolerance(dtype),
        likely_bugs=distinct_bugs(oracle.layer_norm_bug_outputs(x, weight, bias, eps, dtype), expected),
    )
    with torch.no_grad():
        builtin = oracle.builtin_layer_norm(weight, bias, eps)(x.double()).to(dtype)
    assert_close(
        out, builtin, what=_("LayerNorm output vs nn.LayerNorm"), case=case, hint=oracle.LN_HINT, **tolerance(dtype)
    )


@pytest.mark.parametrize("eps", [None, 1e-5, 1e-6, 1e-3])
def test_layernorm_eps_inside_the_square_root(impl, eps):
    eps_value = 1e-5 if eps is None else eps
    d = 6
    weight, bias = affine(d, 3)
    # Rows whose variance is close to eps, where sqrt(var + eps) and sqrt(var) + eps differ most.
    x = rows_with_variance((3, 4, d), 4, torch.float64, np.sqrt(eps_value), 0.5)
    out = make_layer_norm(impl, d, torch.float64, eps=eps, weight=weight, bias=bias)(x)
    with torch.no_grad():
        expected = oracle.builtin_layer_norm(weight, bias, eps_value)(x)
    assert_close(
        out,
        expected,
        what=_("LayerNorm output on rows whose variance is about eps"),
        case=_(
            "LayerNorm(6) with a random weight and bias, on rows of variance {variance} (float64)",
            variance=f"{eps_value:g}",
        )
        if eps is None
        else _(
            "LayerNorm(6, eps={eps}) with a random weight and bias, on rows of variance {variance} (float64)",
            eps=f"{eps:g}",
            variance=f"{eps_value:g}",
        ),
        **tolerance(torch.float64),
        hint=_("eps goes inside the square root, sqrt(var + eps); the default eps is 1e-5"),
        likely_bugs=distinct_bugs(oracle.layer_norm_bug_outputs(x, weight, bias, eps_value, torch.float64), expected),
    )


def test_layernorm_parameters_named_and_initialised(impl):
    norm = impl.normalization.LayerNorm(7)
    params = dict(norm.named_parameters())
    check(
        set(params) == {"weight", "bias"},
        _("the parameters are {names}, expected weight and bias", names=sorted(params)),
        _("two nn.Parameter called weight and bias"),
        case=_("LayerNorm({d})", d=7),
    )
    check(
        set(norm.state_dict()) == {"weight", "bias"},
        _("the state_dict keys are {keys}, expected weight and bias", keys=sorted(norm.state_dict())),
        _("only the parameters weight and bias"),
        case=_("LayerNorm({d})", d=7),
    )
    assert_equal(
        params["weight"].detach(),
        torch.ones(7),
        what=_("weight at initialisation"),
        case=_("LayerNorm({d})", d=7),
        hint=_("initialise it to torch.ones(d_model)"),
    )
    assert_equal(
        params["bias"].detach(),
        torch.zeros(7),
        what=_("bias at initialisation"),
        case=_("LayerNorm({d})", d=7),
        hint=_("initialise it to torch.zeros(d_model)"),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layernorm_gradients_match_nn_layernorm(impl, dtype):
    d, eps = 8, 1e-3
    weight, bias = affine(d, 11)
    norm = make_layer_norm(impl, d, dtype, eps=eps, weight=weight, bias=bias)
    x, upstream = tensor((2, 5, d), 12, dtype, scale=0.1), tensor((2, 5, d), 13, dtype)
    arg_grads, param_grads = impl.gradients(norm, [x], upstream)
    builtin = oracle.builtin_layer_norm(weight, bias, eps)
    leaf = x.double().requires_grad_(True)
    (builtin(leaf) * upstream.double()).sum().backward()
    case = _(
        "LayerNorm({d}, eps={eps}) with a random weight and bias, on an input of shape {shape}, {dtype}",
        d=d,
        eps=f"{eps:g}",
        shape=tuple(x.shape),
        dtype=dtype,
    )
    check(
        arg_grads[0] is not None and bool(torch.isfinite(arg_grads[0]).all()),
        _("the gradient with respect to x is missing or not finite"),
        _("build the forward from differentiable torch operations"),
        case=case,
    )
    assert_close(
        arg_grads[0],
        leaf.grad.to(dtype),
        what=_("LayerNorm gradient with respect to x"),
        case=case,
        hint=_("build the forward from differentiable torch operations"),
        **tolerance(dtype),
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
            **tolerance(dtype),
        )


# --------------------------------------------------------------------------- AddNorm


@given(b=st.integers(1, 3), t=st.integers(1, 6), d=st.integers(2, 10), dtype=dtypes, seed=seeds)
def test_addnorm_with_linear_sublayer_matches_oracle(impl, b, t, d, dtype, seed):
    weight, bias = affine(d, seed + 3)
    add_norm = make_add_norm(impl, d, dtype, weight, bias, dropout=0.1)
    linear = linear_module(d, d, seed + 1, dtype)
    x = tensor((b, t, d), seed, dtype)
    out = add_norm(x, linear)
    sub = oracle.linear_fn(linear)
    expected = torch.from_numpy(oracle.add_norm(x, sub, weight, bias)).to(dtype)
    assert_close(
        out,
        expected,
        what=_("AddNorm output vs numpy float64"),
        case=_(
            "AddNorm({d}) around an nn.Linear sublayer, in eval mode, on an input of shape {shape}, {dtype}",
            d=d,
            shape=tuple(x.shape),
            dtype=dtype,
        ),
        hint=oracle.ADD_NORM_HINT,
        **tolerance(dtype),
        likely_bugs=distinct_bugs(
            oracle.add_norm_bug_outputs(x, sub, weight, bias, dtype), expected, **tolerance(dtype)
        ),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_addnorm_with_identity_sublayer(impl, dtype):
    d = 6
    add_norm = impl.normalization.AddNorm(d, dropout=0.0)
    add_norm.to(dtype)
    x = tensor((2, 3, d), 21, dtype)
    expected = torch.from_numpy(oracle.layer_norm(2 * x.double(), eps=1e-5)).to(dtype)
    assert_close(
        add_norm(x, nn.Identity()),
        expected,
        what=_("AddNorm output around nn.Identity (it must be LayerNorm(x + x))"),
        case=_(
            "AddNorm({d}) around nn.Identity, on an input of shape {shape}, {dtype}",
            d=d,
            shape=tuple(x.shape),
            dtype=dtype,
        ),
        hint=oracle.ADD_NORM_HINT,
        **tolerance(dtype),
    )


def test_addnorm_state_dict_and_initialisation(impl):
    add_norm = impl.normalization.AddNorm(5, dropout=0.1)
    state = add_norm.state_dict()
    check(
        set(state) == {"norm.weight", "norm.bias"},
        _("the state_dict keys are {keys}, expected norm.weight and norm.bias", keys=sorted(state)),
        _("a LayerNorm(d_model) submodule called norm (and an nn.Dropout called dropout)"),
        case=_("AddNorm({d})", d=5),
    )
    assert_equal(
        state["norm.weight"],
        torch.ones(5),
        what=_("norm.weight at initialisation"),
        case=_("AddNorm({d})", d=5),
        hint=_("initialise it to torch.ones(d_model)"),
    )
    assert_equal(
        state["norm.bias"],
        torch.zeros(5),
        what=_("norm.bias at initialisation"),
        case=_("AddNorm({d})", d=5),
        hint=_("initialise it to torch.zeros(d_model)"),
    )


def test_addnorm_dropout_only_in_training_mode(impl):
    d = 8
    add_norm = impl.normalization.AddNorm(d, dropout=0.5)
    add_norm.to(torch.float64)
    add_norm.eval()
    linear = linear_module(d, d, 30, torch.float64)
    x = tensor((2, 6, d), 31)
    expected = torch.from_numpy(oracle.add_norm(x, oracle.linear_fn(linear), np.ones(d), np.zeros(d)))
    case = _(
        "AddNorm({d}, dropout=0.5) around an nn.Linear sublayer, on an input of shape {shape}",
        d=d,
        shape=tuple(x.shape),
    )
    for _repeat in range(2):
        assert_close(
            add_norm(x, linear),
            expected,
            what=_("AddNorm output in eval mode"),
            case=case,
            **tolerance(torch.float64),
            hint=_("use self.dropout (an nn.Dropout module): it is the identity after .eval()"),
        )
    add_norm.train()
    first, second = add_norm(x, linear), add_norm(x, linear)
    check(
        not torch.allclose(first, second),
        _("in training mode, two calls gave the same output: the dropout is not applied"),
        _("apply self.dropout to the sublayer's output"),
        case=case,
    )
    check(
        not torch.allclose(first, expected),
        _("in training mode, the output equals the eval-mode output: the dropout is not applied"),
        _("apply self.dropout to the sublayer's output"),
        case=case,
    )


def test_addnorm_dropout_acts_on_the_sublayer_output_only(impl):
    d = 8
    add_norm = impl.normalization.AddNorm(d, dropout=0.5)
    add_norm.to(torch.float64)
    add_norm.train()
    zero = nn.Linear(d, d).double()
    with torch.no_grad():
        zero.weight.zero_()
        zero.bias.zero_()
    x = tensor((2, 6, d), 32)
    assert_close(
        add_norm(x, zero),
        torch.from_numpy(oracle.layer_norm(x)),
        **tolerance(torch.float64),
        what=_("AddNorm output around a sublayer that returns zeros (it must be norm(x))"),
        case=_("AddNorm({d}, dropout=0.5) in training mode, on an input of shape {shape}", d=d, shape=tuple(x.shape)),
        hint=_("drop out only sublayer(x), never x itself or the sum: norm(x + dropout(sublayer(x)))"),
    )
