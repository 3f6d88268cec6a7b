"""Part `feed_forward`: PositionwiseFeedForward (paper §3.3, equation 2).

FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to every position separately, with dropout on
the hidden activations in training mode only.
References: a numpy float64 oracle and ``nn.Sequential(Linear, ReLU, Linear)`` with the same
weights. Tolerances: float64 rtol 1e-9 / atol 1e-10, float32 rtol 1e-4 / atol 1e-5.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.builders import make_ffn
from tests.support.checks import assert_close, check, tolerance
from tests.support.likely_bugs import distinct_bugs
from tests.support.oracles import feed_forward as oracle
from tests.support.strategies import dtypes, seeds, tensor

leading_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)  # 2-D to 4-D inputs


@given(lead=leading_shapes, d_model=st.integers(1, 8), d_ff=st.integers(1, 16), dtype=dtypes, seed=seeds)
def test_ffn_matches_numpy_oracle_and_torch_builtin(impl, lead, d_model, d_ff, dtype, seed):
    ffn, state = make_ffn(impl, d_model, d_ff, dtype, seed)
    x = tensor(lead + (d_model,), seed + 1, dtype)
    out = ffn(x)
    expected = torch.from_numpy(oracle.feed_forward(state, x)).to(dtype)
    case = oracle.ffn_case(d_model, d_ff, x, dtype)
    assert_close(
        out,
        expected,
        what=_("FFN output vs numpy float64"),
        case=case,
        hint=oracle.FFN_HINT,
        **tolerance(dtype),
        likely_bugs=distinct_bugs(oracle.ffn_bug_outputs(state, x, dtype), expected),
    )
    with torch.no_grad():
        builtin = oracle.builtin_ffn({k: v.double() for k, v in state.items()})(x.double()).to(dtype)
    assert_close(
        out,
        builtin,
        what=_("FFN output vs nn.Sequential(Linear, ReLU, Linear)"),
        case=case,
        hint=oracle.FFN_HINT,
        **tolerance(dtype),
    )


@given(
    b=st.integers(1, 3),
    t=st.integers(1, 6),
    d_model=st.integers(1, 6),
    d_ff=st.integers(1, 12),
    dtype=dtypes,
    seed=seeds,
)
def test_ffn_is_position_wise(impl, b, t, d_model, d_ff, dtype, seed):
    ffn, _state = make_ffn(impl, d_model, d_ff, dtype, seed)
    x = tensor((b, t, d_model), seed + 1, dtype)
    out = ffn(x)
    case = oracle.ffn_case(d_model, d_ff, x, dtype)
    for i in range(t):
        assert_close(
            ffn(x[:, i : i + 1]),
            out[:, i : i + 1],
            **tolerance(dtype),
            what=_("FFN of position {i} alone vs position {i} of the whole sequence", i=i),
            case=case,
            hint=_("the same two linear maps act on every position separately: no mixing along the sequence axis"),
        )
    assert_close(
        ffn(x.reshape(b * t, d_model)),
        out.reshape(b * t, d_model),
        **tolerance(dtype),
        what=_("FFN of the positions flattened to (B*T, d_model) vs the (B, T, d_model) result"),
        case=case,
        hint=_("work on the last axis only, whatever the leading axes"),
    )


def test_ffn_state_dict_names_and_shapes(impl):
    ffn = impl.feed_forward.PositionwiseFeedForward(3, 7, dropout=0.1)
    shapes = {name: tuple(value.shape) for name, value in ffn.state_dict().items()}
    expected = {"w_1.weight": (7, 3), "w_1.bias": (7,), "w_2.weight": (3, 7), "w_2.bias": (3,)}
    check(
        shapes == expected,
        _("the state_dict holds {shapes}, expected {expected}", shapes=shapes, expected=expected),
        _("w_1 = nn.Linear(d_model, d_ff) and w_2 = nn.Linear(d_ff, d_model), with bias; nothing else with weights"),
        case=_("PositionwiseFeedForward(d_model={d_model}, d_ff={d_ff})", d_model=3, d_ff=7),
    )


def test_ffn_dropout_only_in_training_mode(impl):
    d_model, d_ff = 6, 24
    ffn, state = make_ffn(impl, d_model, d_ff, torch.float64, 3, dropout=0.5)  # eval mode
    x = tensor((2, 5, d_model), 4)
    expected = torch.from_numpy(oracle.feed_forward(state, x))
    case = _(
        "PositionwiseFeedForward(d_model={d_model}, d_ff={d_ff}, dropout=0.5) on an input of shape {shape}",
        d_model=d_model,
        d_ff=d_ff,
        shape=tuple(x.shape),
    )
    for _repeat in range(2):
        assert_close(
            ffn(x),
            expected,
            what=_("FFN output in eval mode"),
            case=case,
            hint=_("use an nn.Dropout module: it is the identity after .eval()"),
            **tolerance(torch.float64),
        )
    ffn.train()
    first, second = ffn(x), ffn(x)
    check(
        not torch.allclose(first, second),
        _("in training mode, two calls gave the same output: the dropout is not applied"),
        _("apply self.dropout (nn.Dropout(dropout)) to the hidden activations"),
        case=case,
    )
    check(
        not torch.allclose(first, expected),
        _("in training mode, the output equals the eval-mode output: the dropout is not applied"),
        _("apply self.dropout (nn.Dropout(dropout)) to the hidden activations"),
        case=case,
    )


def test_ffn_dropout_acts_on_the_hidden_layer(impl):
    d_model, d_ff = 4, 32
    x = tensor((3, 5, d_model), 7)
    # (a) w_2.weight = 0: the output is b_2 whatever the hidden layer holds. Dropout on the hidden
    # layer leaves it alone; dropout on the output would not.
    state = oracle.random_ffn_state(d_model, d_ff, 8)
    state["w_2.weight"] = torch.zeros(d_model, d_ff, dtype=torch.float64)
    ffn, _state = make_ffn(impl, d_model, d_ff, torch.float64, 0, dropout=0.5, state=state)
    ffn.train()
    case = _(
        "PositionwiseFeedForward(d_model={d_model}, d_ff={d_ff}, dropout=0.5) in training mode with "
        "w_2.weight = 0, on an input of shape {shape}",
        d_model=d_model,
        d_ff=d_ff,
        shape=tuple(x.shape),
    )
    hint = _("the dropout goes between the ReLU and w_2, not on the output")
    out, bias = ffn(x), state["w_2.bias"].expand(3, 5, d_model)
    check(
        not oracle.looks_like_dropout_of(out, bias, 0.5),
        _("the dropout is applied to the output of w_2 instead of the hidden activations"),
        hint,
        case=case,
        likely_bug=True,
    )
    assert_close(
        out,
        bias,
        **tolerance(torch.float64),
        what=_("FFN output in training mode (it must be b_2)"),
        case=case,
        hint=hint,
    )
    # (b) w_1.weight = 0, b_1 > 0: the hidden layer is relu(b_1) for every input. Dropout on the
    # input would change nothing; dropout on the hidden layer must show.
    state = oracle.random_ffn_state(d_model, d_ff, 9)
    state["w_1.weight"] = torch.zeros(d_ff, d_model, dtype=torch.float64)
    state["w_1.bias"] = state["w_1.bias"].abs() + 0.5
    ffn, _state = make_ffn(impl, d_model, d_ff, torch.float64, 0, dropout=0.5, state=state)
    ffn.train()
    out = ffn(x)
    check(
        not torch.allclose(out, torch.from_numpy(oracle.feed_forward(state, x))),
        _("in training mode, the output shows no dropout: it is not applied to the hidden activations"),
        _("apply the dropout to the hidden activations relu(w_1(x)), not to the input"),
        case=_(
            "PositionwiseFeedForward(d_model={d_model}, d_ff={d_ff}, dropout=0.5) in training mode with "
            "w_1.weight = 0, on an input of shape {shape}",
            d_model=d_model,
            d_ff=d_ff,
            shape=tuple(x.shape),
        ),
    )


def test_ffn_gradients_match_torch_builtin(impl):
    d_model, d_ff = 5, 11
    ffn, state = make_ffn(impl, d_model, d_ff, torch.float64, 12)
    x, upstream = tensor((2, 4, d_model), 13), tensor((2, 4, d_model), 14)
    arg_grads, param_grads = impl.gradients(ffn, [x], upstream)
    builtin = oracle.builtin_ffn(state)
    leaf = x.clone().requires_grad_(True)
    (builtin(leaf) * upstream).sum().backward()
    case = oracle.ffn_case(d_model, d_ff, x)
    assert_close(
        arg_grads[0],
        leaf.grad,
        what=_("gradient of the FFN with respect to its input"),
        case=case,
        **tolerance(torch.float64),
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
            param.grad,
            what=_("gradient of the FFN with respect to {name}", name=name),
            case=case,
            **tolerance(torch.float64),
        )
