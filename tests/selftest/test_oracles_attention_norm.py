"""The attention, feed-forward and normalisation oracles agree with the PyTorch built-ins,
and their bug variants really differ from the correct answer (so that a ``likely_bugs``
entry can only name a bug that changes the result). No student code is involved."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from tests.support.oracles import attention as attn_oracle
from tests.support.oracles import feed_forward as ffn_oracle
from tests.support.oracles import normalization as norm_oracle
from tests.support.strategies import attention_shapes, key_padding_mask, model_dims, random_mask, seeds, tensor

F64 = {"rtol": 1e-10, "atol": 1e-12}


def close(a, b, **tol):
    a = a.detach().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().double().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, **(tol or F64))


@given(shape=attention_shapes(), seed=seeds, mask_kind=st.sampled_from([None, "padding", "random"]))
def test_numpy_sdpa_matches_torch_builtin(shape, seed, mask_kind):
    b, t_q, t_k, d_k, d_v = shape
    q, k, v = tensor((b, t_q, d_k), seed), tensor((b, t_k, d_k), seed + 1), tensor((b, t_k, d_v), seed + 2)
    mask = None
    if mask_kind == "padding":
        mask = key_padding_mask(b, t_k, seed)
    elif mask_kind == "random":
        mask = random_mask(b, t_q, t_k, seed)
    out, weights = attn_oracle.sdpa(q, k, v, mask)
    close(out, attn_oracle.builtin_sdpa(q, k, v, mask))
    close(weights.sum(-1), np.ones((b, t_q)))
    if mask is not None:
        assert (weights[~np.broadcast_to(mask.numpy(), weights.shape)] == 0).all()


@given(
    dims=model_dims(),
    batch=st.integers(1, 3),
    t_q=st.integers(1, 6),
    t_k=st.integers(1, 6),
    seed=seeds,
    mask_kind=st.sampled_from([None, "padding", "random", "shared"]),
    cross=st.booleans(),
)
def test_numpy_mha_matches_nn_multihead_attention(dims, batch, t_q, t_k, seed, mask_kind, cross):
    d_model, h = dims
    if not cross:
        t_k = t_q
    state = attn_oracle.random_mha_state(d_model, seed)
    query = tensor((batch, t_q, d_model), seed + 1)
    key = query if not cross else tensor((batch, t_k, d_model), seed + 2)
    value = query if not cross else tensor((batch, t_k, d_model), seed + 3)
    mask = {
        None: None,
        "padding": key_padding_mask(batch, t_k, seed),
        "random": random_mask(batch, t_q, t_k, seed),
        "shared": random_mask(1, t_q, t_k, seed),
    }[mask_kind]
    out, weights = attn_oracle.multi_head_attention(state, query, key, value, h, mask)
    builtin = attn_oracle.builtin_mha(state, d_model, h)
    with torch.no_grad():
        ref_out, ref_weights = attn_oracle.run_builtin_mha(builtin, query, key, value, mask)
    close(out, ref_out)
    close(weights, ref_weights)


def test_builtin_mha_gradients_in_contract_names():
    d_model, h = 6, 2
    state = attn_oracle.random_mha_state(d_model, 3)
    x = tensor((2, 4, d_model), 4)
    builtin = attn_oracle.builtin_mha(state, d_model, h)
    out, _ = attn_oracle.run_builtin_mha(builtin, x, x, x)
    out.sum().backward()
    grads = attn_oracle.builtin_mha_param_grads(builtin)
    assert set(grads) == set(state)
    # Finite differences on one entry of w_k.weight and w_o.bias, through the numpy oracle.
    for name, index in (("w_k.weight", (1, 2)), ("w_o.bias", (3,)), ("w_v.bias", (0,))):
        step = 1e-6
        plus = {key: value.clone() for key, value in state.items()}
        minus = {key: value.clone() for key, value in state.items()}
        plus[name][index] += step
        minus[name][index] -= step
        numeric = (
            attn_oracle.multi_head_attention(plus, x, x, x, h)[0].sum()
            - attn_oracle.multi_head_attention(minus, x, x, x, h)[0].sum()
        ) / (2 * step)
        assert abs(numeric - grads[name][index].item()) < 1e-6


@pytest.mark.parametrize("variant", attn_oracle.MHA_VARIANTS[1:])
def test_mha_bug_variants_differ_from_correct(variant):
    d_model, h = 8, 2  # h > 1 and d_k > 1 so that every variant is a different function
    state = attn_oracle.random_mha_state(d_model, 11)
    x = tensor((2, 5, d_model), 12, scale=2.0)
    mask = random_mask(2, 5, 5, 13)
    correct, _ = attn_oracle.multi_head_attention(state, x, x, x, h, mask)
    buggy, _ = attn_oracle.multi_head_attention(state, x, x, x, h, mask, variant)
    assert np.abs(correct - buggy).max() > 1e-3


@pytest.mark.parametrize("variant", attn_oracle.SDPA_VARIANTS[1:])
def test_sdpa_bug_variants_differ_from_correct(variant):
    q, k, v = tensor((2, 4, 4), 1, scale=2.0), tensor((2, 5, 4), 2, scale=2.0), tensor((2, 5, 3), 3)
    mask = random_mask(2, 4, 5, 4)
    correct, _ = attn_oracle.sdpa(q, k, v, mask)
    buggy, _ = attn_oracle.sdpa(q, k, v, mask, variant)
    assert np.isfinite(buggy).all()
    assert np.abs(correct - buggy).max() > 1e-3


@given(
    rows=st.integers(1, 4),
    d=st.integers(1, 9),
    seed=seeds,
    eps=st.sampled_from([1e-5, 1e-6, 1e-3]),
    scale=st.sampled_from([0.01, 1.0, 10.0]),
)
def test_numpy_layer_norm_matches_nn_layernorm(rows, d, seed, eps, scale):
    x = tensor((rows, 3, d), seed, scale=scale)
    weight, bias = 1.0 + tensor((d,), seed + 1, scale=0.3), tensor((d,), seed + 2, scale=0.3)
    builtin = norm_oracle.builtin_layer_norm(weight, bias, eps)
    close(norm_oracle.layer_norm(x, weight, bias, eps), builtin(x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("variant", norm_oracle.LAYER_NORM_VARIANTS[1:])
def test_layer_norm_bug_variants_differ_from_correct(variant):
    x = tensor((3, 4, 6), 5, scale=0.05)  # variance ~ 2.5e-3: eps = 1e-3 matters
    weight, bias = 1.0 + tensor((6,), 6, scale=0.3), tensor((6,), 7, scale=0.3)
    correct = norm_oracle.layer_norm(x, weight, bias, 1e-3)
    buggy = norm_oracle.layer_norm(x, weight, bias, 1e-3, variant)
    assert np.abs(correct - buggy).max() > 1e-3


@given(d=st.integers(1, 8), seed=seeds)
def test_numpy_add_norm_with_linear_matches_torch(d, seed):
    x = tensor((2, 3, d), seed)
    lin_w, lin_b = tensor((d, d), seed + 1), tensor((d,), seed + 2)
    weight, bias = 1.0 + tensor((d,), seed + 3, scale=0.3), tensor((d,), seed + 4, scale=0.3)
    linear = torch.nn.Linear(d, d, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(lin_w)
        linear.bias.copy_(lin_b)
        expected = F.layer_norm(x + linear(x), (d,), weight, bias, 1e-5)
    got = norm_oracle.add_norm(x, lambda a: norm_oracle.linear(a, lin_w, lin_b), weight, bias)
    close(got, expected, rtol=1e-9, atol=1e-10)


@given(d_model=st.integers(1, 6), d_ff=st.integers(1, 10), seed=seeds)
def test_numpy_ffn_matches_torch_sequential(d_model, d_ff, seed):
    state = ffn_oracle.random_ffn_state(d_model, d_ff, seed)
    x = tensor((2, 3, d_model), seed + 1)
    with torch.no_grad():
        close(ffn_oracle.feed_forward(state, x), ffn_oracle.builtin_ffn(state)(x))


@pytest.mark.parametrize("variant", ffn_oracle.FFN_VARIANTS[1:])
def test_ffn_bug_variants_differ_from_correct(variant):
    state = ffn_oracle.random_ffn_state(4, 8, 0)
    x = tensor((3, 5, 4), 1)
    correct = ffn_oracle.feed_forward(state, x)
    assert np.abs(correct - ffn_oracle.feed_forward(state, x, variant)).max() > 1e-3


def test_sdpa_numpy_handles_huge_scores():
    q, k, v = tensor((1, 3, 4), 0, scale=100.0), tensor((1, 5, 4), 1, scale=100.0), tensor((1, 5, 2), 2)
    out, weights = attn_oracle.sdpa(q, k, v, random_mask(1, 3, 5, 0))
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    scores = (q @ k.transpose(-2, -1)).abs().max().item() / math.sqrt(4)
    assert scores > 1e3


def test_lazy_bugs_compute_only_on_a_mismatch():
    from tests.support.checks import assert_close
    from tests.support.likely_bugs import lazy_bugs

    calls = []

    def compute():
        calls.append(1)
        return {"a named bug": torch.zeros(3)}

    assert_close(torch.ones(3), torch.ones(3), what="equal", likely_bugs=lazy_bugs(compute))
    assert calls == []
    with pytest.raises(AssertionError, match="likely bug — a named bug"):
        assert_close(torch.zeros(3), torch.ones(3), what="different", likely_bugs=lazy_bugs(compute))
    assert calls == [1]
