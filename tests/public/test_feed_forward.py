"""Part `feed_forward`: PositionwiseFeedForward (paper §3.3, equation 2).

FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to every position separately, with dropout on
the hidden activations in training mode only.
References: a numpy float64 oracle and ``nn.Sequential(Linear, ReLU, Linear)`` with the same
weights. Tolerances: float64 rtol 1e-9 / atol 1e-10, float32 rtol 1e-4 / atol 1e-5.
"""
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.support.checks import assert_close, check, tolerance
from tests.support.oracles import feed_forward as oracle
from tests.support.oracles.attention import distinct_bugs
from tests.support.strategies import dtypes, seeds, tensor

leading_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)  # 2-D to 4-D inputs
HINT = "FFN(x) = w_2(dropout(relu(w_1(x)))), with w_1 = nn.Linear(d_model, d_ff), w_2 = nn.Linear(d_ff, d_model)"


def make_ffn(impl, d_model, d_ff, dtype, seed, dropout=0.0, state=None):
    state = oracle.random_ffn_state(d_model, d_ff, seed, dtype) if state is None else state
    ffn = impl.feed_forward.PositionwiseFeedForward(d_model, d_ff, dropout=dropout)
    ffn.to(dtype)
    ffn.load_state_dict(state, strict=True)
    ffn.eval()
    return ffn, state


@given(lead=leading_shapes, d_model=st.integers(1, 8), d_ff=st.integers(1, 16), dtype=dtypes, seed=seeds)
def test_ffn_matches_numpy_oracle_and_torch_builtin(impl, lead, d_model, d_ff, dtype, seed):
    ffn, state = make_ffn(impl, d_model, d_ff, dtype, seed)
    x = tensor(lead + (d_model,), seed + 1, dtype)
    out = ffn(x)
    expected = torch.from_numpy(oracle.feed_forward(state, x)).to(dtype)
    what = f"PositionwiseFeedForward(d_model={d_model}, d_ff={d_ff}) on input {tuple(x.shape)} ({dtype})"
    assert_close(out, expected, what=f"{what} vs numpy float64", hint=HINT, **tolerance(dtype),
                 likely_bugs=distinct_bugs(oracle.ffn_bug_outputs(state, x, dtype), expected))
    with torch.no_grad():
        builtin = oracle.builtin_ffn({k: v.double() for k, v in state.items()})(x.double()).to(dtype)
    assert_close(out, builtin, what=f"{what} vs nn.Sequential(Linear, ReLU, Linear)", hint=HINT, **tolerance(dtype))


@given(b=st.integers(1, 3), t=st.integers(1, 6), d_model=st.integers(1, 6), d_ff=st.integers(1, 12), dtype=dtypes, seed=seeds)
def test_ffn_is_position_wise(impl, b, t, d_model, d_ff, dtype, seed):
    ffn, _ = make_ffn(impl, d_model, d_ff, dtype, seed)
    x = tensor((b, t, d_model), seed + 1, dtype)
    out = ffn(x)
    for i in range(t):
        assert_close(ffn(x[:, i:i + 1]), out[:, i:i + 1], **tolerance(dtype),
                     what=f"FFN of position {i} alone vs position {i} of the whole sequence (T={t})",
                     hint="the same two linear maps act on every position separately: no mixing along the sequence axis")
    assert_close(ffn(x.reshape(b * t, d_model)), out.reshape(b * t, d_model), **tolerance(dtype),
                 what="FFN of the positions flattened to (B*T, d_model) vs the (B, T, d_model) result",
                 hint="work on the last axis only, whatever the leading axes")


def test_ffn_state_dict_names_and_shapes(impl):
    ffn = impl.feed_forward.PositionwiseFeedForward(3, 7, dropout=0.1)
    shapes = {name: tuple(value.shape) for name, value in ffn.state_dict().items()}
    expected = {"w_1.weight": (7, 3), "w_1.bias": (7,), "w_2.weight": (3, 7), "w_2.bias": (3,)}
    check(shapes == expected, f"PositionwiseFeedForward(d_model=3, d_ff=7).state_dict(): expected {expected}, got {shapes}",
          "w_1 = nn.Linear(d_model, d_ff) and w_2 = nn.Linear(d_ff, d_model), with bias; nothing else with weights")


def test_ffn_dropout_only_in_training_mode(impl):
    d_model, d_ff = 6, 24
    ffn, state = make_ffn(impl, d_model, d_ff, torch.float64, 3, dropout=0.5)  # eval mode
    x = tensor((2, 5, d_model), 4)
    expected = torch.from_numpy(oracle.feed_forward(state, x))
    for _ in range(2):
        assert_close(ffn(x), expected, what="PositionwiseFeedForward(dropout=0.5) in eval mode",
                     hint="use an nn.Dropout module: it is the identity after .eval()", **tolerance(torch.float64))
    ffn.train()
    first, second = ffn(x), ffn(x)
    check(not torch.allclose(first, second),
          "PositionwiseFeedForward(dropout=0.5) in training mode: two calls gave the same output",
          "apply self.dropout (nn.Dropout(dropout)) to the hidden activations")
    check(not torch.allclose(first, expected),
          "PositionwiseFeedForward(dropout=0.5) in training mode equals the eval-mode output",
          "apply self.dropout (nn.Dropout(dropout)) to the hidden activations")


def test_ffn_dropout_acts_on_the_hidden_layer(impl):
    d_model, d_ff = 4, 32
    x = tensor((3, 5, d_model), 7)
    # (a) w_2.weight = 0: the output is b_2 whatever the hidden layer holds. Dropout on the hidden
    # layer leaves it alone; dropout on the output would not.
    state = oracle.random_ffn_state(d_model, d_ff, 8)
    state["w_2.weight"] = torch.zeros(d_model, d_ff, dtype=torch.float64)
    ffn, _ = make_ffn(impl, d_model, d_ff, torch.float64, 0, dropout=0.5, state=state)
    ffn.train()
    assert_close(ffn(x), state["w_2.bias"].expand(3, 5, d_model), **tolerance(torch.float64),
                 what="PositionwiseFeedForward(dropout=0.5) in training mode with w_2.weight = 0",
                 hint="the dropout goes between the ReLU and w_2, not on the output")
    # (b) w_1.weight = 0, b_1 > 0: the hidden layer is relu(b_1) for every input. Dropout on the
    # input would change nothing; dropout on the hidden layer must show.
    state = oracle.random_ffn_state(d_model, d_ff, 9)
    state["w_1.weight"] = torch.zeros(d_ff, d_model, dtype=torch.float64)
    state["w_1.bias"] = state["w_1.bias"].abs() + 0.5
    ffn, _ = make_ffn(impl, d_model, d_ff, torch.float64, 0, dropout=0.5, state=state)
    ffn.train()
    out = ffn(x)
    check(not torch.allclose(out, torch.from_numpy(oracle.feed_forward(state, x))),
          "PositionwiseFeedForward(dropout=0.5) in training mode with w_1.weight = 0: no dropout visible",
          "apply the dropout to the hidden activations relu(w_1(x)), not to the input")


def test_ffn_gradients_match_torch_builtin(impl):
    d_model, d_ff = 5, 11
    ffn, state = make_ffn(impl, d_model, d_ff, torch.float64, 12)
    x, upstream = tensor((2, 4, d_model), 13), tensor((2, 4, d_model), 14)
    arg_grads, param_grads = impl.gradients(ffn, [x], upstream)
    builtin = oracle.builtin_ffn(state)
    leaf = x.clone().requires_grad_(True)
    (builtin(leaf) * upstream).sum().backward()
    assert_close(arg_grads[0], leaf.grad, what="gradient of the FFN with respect to its input", **tolerance(torch.float64))
    names = {"w_1.weight": builtin[0].weight, "w_1.bias": builtin[0].bias,
             "w_2.weight": builtin[2].weight, "w_2.bias": builtin[2].bias}
    for name, param in names.items():
        check(param_grads.get(name) is not None, f"no gradient reached {name}")
        assert_close(param_grads[name], param.grad, what=f"gradient of the FFN with respect to {name}",
                     **tolerance(torch.float64))
