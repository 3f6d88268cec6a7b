"""Part `feed_forward` (hidden): PositionwiseFeedForward (paper §3.3, equation 2) — more sizes,
hand-computed values, dropout statistics, gradients.

Tolerances: float64 rtol 1e-9 / atol 1e-10, float32 rtol 1e-4 / atol 1e-5 (2e-4 / 2e-5 for
the larger widths).
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.builders import make_ffn
from tests.support.checks import assert_close, assert_equal, check, tolerance
from tests.support.likely_bugs import distinct_bugs
from tests.support.oracles import feed_forward as oracle
from tests.support.strategies import dtypes, seeds, tensor


def test_ffn_hand_computed_example(impl):
    state = {
        "w_1.weight": torch.tensor([[1.0, -1.0], [2.0, 0.5], [0.0, 1.0]], dtype=torch.float64),
        "w_1.bias": torch.tensor([0.5, -3.0, 0.0], dtype=torch.float64),
        "w_2.weight": torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 3.0]], dtype=torch.float64),
        "w_2.bias": torch.tensor([-0.25, 1.0], dtype=torch.float64),
    }
    ffn, _state = make_ffn(impl, 2, 3, torch.float64, 0, state=state)
    x = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]], dtype=torch.float64)
    # position 0: hidden = relu(-0.5, -0.0, 2) = (0, 0, 2)   -> (-2 - 0.25, 6 + 1)
    # position 1: hidden = relu(4.5, 2.5, -1) = (4.5, 2.5, 0) -> (9.5 - 0.25, -0.25 + 1)
    expected = torch.tensor([[[-2.25, 7.0], [9.25, 0.75]]], dtype=torch.float64)
    assert_close(
        ffn(x),
        expected,
        what=_("FFN output on a hand-computed example"),
        case=oracle.ffn_case(2, 3, x),
        hint=oracle.FFN_HINT,
        **tolerance(torch.float64),
        likely_bugs=oracle.ffn_bug_outputs(state, x, torch.float64),
    )


@given(
    lead=st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple),
    d_model=st.integers(1, 32),
    d_ff=st.integers(1, 64),
    dtype=dtypes,
    seed=seeds,
)
def test_ffn_more_shapes_and_widths(impl, lead, d_model, d_ff, dtype, seed):
    ffn, state = make_ffn(impl, d_model, d_ff, dtype, seed)
    x = tensor(lead + (d_model,), seed + 1, dtype, scale=2.0)
    expected = torch.from_numpy(oracle.feed_forward(state, x)).to(dtype)
    tol = {"rtol": 2e-4, "atol": 2e-5} if dtype == torch.float32 else tolerance(dtype)
    assert_close(
        ffn(x),
        expected,
        what=_("FFN output vs numpy float64"),
        case=oracle.ffn_case(d_model, d_ff, x, dtype),
        hint=_("{formula}; keep every leading axis", formula=oracle.FFN_HINT),
        **tol,
        likely_bugs=distinct_bugs(oracle.ffn_bug_outputs(state, x, dtype), expected),
    )


def test_ffn_all_negative_hidden_layer_gives_the_bias(impl):
    d_model, d_ff = 3, 5
    state = oracle.random_ffn_state(d_model, d_ff, 3)
    state["w_1.weight"] = torch.zeros(d_ff, d_model, dtype=torch.float64)
    state["w_1.bias"] = -1.0 - state["w_1.bias"].abs()
    ffn, _state = make_ffn(impl, d_model, d_ff, torch.float64, 0, state=state)
    x = tensor((2, 4, d_model), 4)
    assert_close(
        ffn(x),
        state["w_2.bias"].expand(2, 4, d_model),
        what=_("FFN output when every hidden pre-activation is negative (it must be b_2)"),
        case=oracle.ffn_case(d_model, d_ff, x),
        hint=_("the ReLU sets them to 0, so the output is just b_2"),
        **tolerance(torch.float64),
        likely_bugs=oracle.ffn_bug_outputs(state, x, torch.float64),
    )


@pytest.mark.parametrize("p", [0.1, 0.6])
def test_ffn_dropout_statistics_on_the_hidden_layer(impl, p):
    d = 64
    state = {
        "w_1.weight": torch.zeros(d, d, dtype=torch.float64),
        "w_1.bias": torch.ones(d, dtype=torch.float64),
        "w_2.weight": torch.eye(d, dtype=torch.float64),
        "w_2.bias": torch.zeros(d, dtype=torch.float64),
    }
    ffn, _state = make_ffn(impl, d, d, torch.float64, 0, dropout=p, state=state)
    ffn.train()
    x = tensor((4, 16, d), 5)
    case = _(
        "PositionwiseFeedForward(d_model={d}, d_ff={d}, dropout={p}) in training mode, with w_1.weight = 0, "
        "b_1 = 1 and w_2 = identity, on an input of shape {shape}",
        d=d,
        p=p,
        shape=tuple(x.shape),
    )
    out = ffn(x)  # = dropout(ones): entries 0 or 1/(1-p)
    kept = out != 0
    assert_close(
        out[kept],
        torch.full((int(kept.sum()),), 1 / (1 - p), dtype=torch.float64),
        **tolerance(torch.float64),
        what=_("hidden units kept by the dropout (they must be 1/(1-p))"),
        case=case,
        hint=_("use nn.Dropout(dropout) (it rescales by 1/(1-p))"),
    )
    share = 1 - kept.double().mean().item()
    # 4096 units: within 0.05 of p with probability > 1 - 1e-12.
    check(
        abs(share - p) < 0.05,
        _("the dropout zeroed a share of {share} of the hidden units, expected about {p}", share=f"{share:.3f}", p=p),
        _("apply nn.Dropout(dropout) once, to the hidden activations"),
        case=case,
    )
    ffn.eval()
    x = tensor((1, 2, d), 6)
    assert_equal(
        ffn(x),
        torch.ones(1, 2, d, dtype=torch.float64),
        what=_("FFN output in eval mode"),
        case=_("the same FFN after .eval(), on an input of shape {shape}", shape=tuple(x.shape)),
        hint=_("nn.Dropout is the identity after .eval()"),
    )


@given(d_model=st.integers(1, 6), d_ff=st.integers(1, 10), dtype=dtypes, seed=seeds)
def test_ffn_gradients_match_torch_builtin(impl, d_model, d_ff, dtype, seed):
    ffn, state = make_ffn(impl, d_model, d_ff, dtype, seed)
    x, upstream = tensor((2, 3, d_model), seed + 1, dtype), tensor((2, 3, d_model), seed + 2, dtype)
    arg_grads, param_grads = impl.gradients(ffn, [x], upstream)
    builtin = oracle.builtin_ffn({k: v.double() for k, v in state.items()})
    leaf = x.double().requires_grad_(True)
    (builtin(leaf) * upstream.double()).sum().backward()
    case = oracle.ffn_case(d_model, d_ff, x, dtype)
    assert_close(
        arg_grads[0],
        leaf.grad.to(dtype),
        what=_("gradient of the FFN with respect to its input"),
        case=case,
        **tolerance(dtype),
    )
    names = {
        "w_1.weight": builtin[0].weight,
        "w_1.bias": builtin[0].bias,
        "w_2.weight": builtin[2].weight,
        "w_2.bias": builtin[2].bias,
    }
    for name, param in names.items():
        check(
            param_grads.get(name) is not None,
            _("no gradient reached {name}", name=name),
            _("use self.w_1 and self.w_2 in forward, with differentiable torch operations"),
            case=case,
        )
        assert_close(
            param_grads[name],
            param.grad.to(dtype),
            what=_("gradient of the FFN with respect to {name}", name=name),
            case=case,
            **tolerance(dtype),
        )


@pytest.mark.parametrize("d_model,d_ff", [(1, 1), (8, 2), (2, 8), (16, 64)])
def test_ffn_shapes_of_the_state_dict(impl, d_model, d_ff):
    ffn = impl.feed_forward.PositionwiseFeedForward(d_model, d_ff, dropout=0.0)
    shapes = {name: tuple(value.shape) for name, value in ffn.state_dict().items()}
    expected = {
        "w_1.weight": (d_ff, d_model),
        "w_1.bias": (d_ff,),
        "w_2.weight": (d_model, d_ff),
        "w_2.bias": (d_model,),
    }
    check(
        shapes == expected,
        _("the state_dict holds {shapes}, expected {expected}", shapes=shapes, expected=expected),
        _("w_1 = nn.Linear(d_model, d_ff), w_2 = nn.Linear(d_ff, d_model)"),
        case=_("PositionwiseFeedForward(d_model={d_model}, d_ff={d_ff})", d_model=d_model, d_ff=d_ff),
    )
    out = ffn(torch.zeros(2, 3, d_model))
    check(
        tuple(out.shape) == (2, 3, d_model) and out.dtype == torch.float32,
        _(
            "the output has shape {shape} and dtype {dtype}, expected {expected_shape} and torch.float32",
            shape=tuple(out.shape),
            dtype=out.dtype,
            expected_shape=(2, 3, d_model),
        ),
        _("the output keeps the input's shape (..., d_model) and dtype"),
        case=_(
            "PositionwiseFeedForward({d_model}, {d_ff}) on zeros of shape {shape}, torch.float32",
            d_model=d_model,
            d_ff=d_ff,
            shape=(2, 3, d_model),
        ),
    )
