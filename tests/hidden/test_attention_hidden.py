"""Part `attention` (hidden): scaled_dot_product_attention and MultiHeadAttention (paper §3.2.1,
§3.2.2) — more sizes, more mask shapes, hand-computed values, where the dropout acts, gradients.

Convention: bool masks, True = this key may be attended to.
Tolerances: float64 within rtol 1e-9 / atol 1e-10 of a float64 reference, float32 within
rtol 1e-4 / atol 1e-5 (``checks.tolerance``); larger models state their own below.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from grader.i18n import _
from tests.support.builders import make_mha
from tests.support.checks import assert_close, assert_equal, check, tolerance
from tests.support.likely_bugs import distinct_bugs, lazy_bugs
from tests.support.oracles import attention as oracle
from tests.support.strategies import attention_mask, dtypes, key_padding_mask, random_mask, seeds, tensor

F32_DEEP = {"rtol": 2e-4, "atol": 2e-5}  # float32 with d_model up to 32


@st.composite
def bigger_model_dims(draw):
    heads = draw(st.sampled_from([1, 2, 4, 8]))
    return heads * draw(st.integers(1, 4)), heads


def mha_case(d_model, h, query, key, mask, dtype, dropout=None):
    """The input description of a MultiHeadAttention call (``mask``: its description, e.g. ``oracle.mask_label``)."""
    if dropout is not None:
        return _(
            "MultiHeadAttention(d_model={d_model}, h={h}, dropout={dropout}), query {query}, key and value "
            "{memory}, {mask}, {dtype}",
            d_model=d_model,
            h=h,
            dropout=dropout,
            query=tuple(query.shape),
            memory=tuple(key.shape),
            mask=mask,
            dtype=dtype,
        )
    return _(
        "MultiHeadAttention(d_model={d_model}, h={h}), query {query}, key and value {memory}, {mask}, {dtype}",
        d_model=d_model,
        h=h,
        query=tuple(query.shape),
        memory=tuple(key.shape),
        mask=mask,
        dtype=dtype,
    )


# --------------------------------------------------------------------------- scaled dot-product attention


def test_sdpa_hand_computed_example(impl):
    q = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    v = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [-5.0, 6.0]]], dtype=torch.float64)
    mask = torch.tensor([[[True, True, False], [True, True, True]]])
    # query 0: scores (1, 0)/√2 over keys 0, 1; query 1: scores (0, 2, 2)/√2.
    a = math.exp(1 / math.sqrt(2))
    w0 = [a / (a + 1), 1 / (a + 1), 0.0]
    c = math.exp(2 / math.sqrt(2))
    w1 = [1 / (1 + 2 * c), c / (1 + 2 * c), c / (1 + 2 * c)]
    expected_w = torch.tensor([[w0, w1]], dtype=torch.float64)
    expected_out = expected_w @ v
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, mask)
    case = _(
        "hand-computed example: Q {q}, K {k}, V {v}, mask {mask} (query 0 may not see key 2), torch.float64",
        q=q[0].tolist(),
        k=k[0].tolist(),
        v=v[0].tolist(),
        mask=mask[0].tolist(),
    )
    assert_close(
        weights,
        expected_w,
        what=_("attention weights vs the hand-computed values"),
        case=case,
        hint=_("softmax(Q Kᵀ / sqrt(d_k)) with d_k = 2 and the masked key at -inf"),
        **tolerance(torch.float64),
        likely_bugs=oracle.sdpa_bug_outputs(q, k, v, mask, torch.float64, "weights"),
    )
    assert_close(out, expected_out, what=_("output vs the hand-computed values"), case=case, **tolerance(torch.float64))


@given(
    b=st.integers(1, 3),
    h=st.integers(1, 3),
    t_q=st.integers(1, 9),
    t_k=st.integers(1, 9),
    d_k=st.integers(1, 8),
    d_v=st.integers(1, 8),
    dtype=dtypes,
    seed=seeds,
    mask_shape=st.sampled_from(["(B,1,1,T_k)", "(B,1,T_q,T_k)", "(B,h,T_q,T_k)", "(T_q,T_k)", "(T_k,)"]),
)
def test_sdpa_four_dimensional_inputs_with_broadcast_masks(impl, b, h, t_q, t_k, d_k, d_v, dtype, seed, mask_shape):
    q, k = tensor((b, h, t_q, d_k), seed, dtype, scale=2.0), tensor((b, h, t_k, d_k), seed + 1, dtype, scale=2.0)
    v = tensor((b, h, t_k, d_v), seed + 2, dtype)
    full = random_mask(b * h, t_q, t_k, seed).view(b, h, t_q, t_k)
    mask = {
        "(B,1,1,T_k)": key_padding_mask(b, t_k, seed).unsqueeze(1),
        "(B,1,T_q,T_k)": full[:, :1],
        "(B,h,T_q,T_k)": full,
        "(T_q,T_k)": full[0, 0],
        "(T_k,)": key_padding_mask(1, t_k, seed)[0, 0],
    }[mask_shape]
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, mask)
    exp_out, exp_w = oracle.sdpa(q, k, v, mask)
    case = _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, a mask of shape {mask_shape} = {shape}, {dtype})",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
        mask_shape=mask_shape,
        shape=tuple(mask.shape),
        dtype=dtype,
    )
    expected_w = torch.from_numpy(exp_w).to(dtype)
    assert_close(
        weights,
        expected_w,
        what=_("attention weights vs numpy float64"),
        case=case,
        **tolerance(dtype),
        hint=_("the mask broadcasts against the scores (..., T_q, T_k): don't reshape it"),
        likely_bugs=lazy_bugs(
            lambda: distinct_bugs(oracle.sdpa_bug_outputs(q, k, v, mask, dtype, "weights"), expected_w)
        ),
    )
    assert_close(
        out, torch.from_numpy(exp_out).to(dtype), what=_("output vs numpy float64"), case=case, **tolerance(dtype)
    )
    assert_close(
        out,
        oracle.builtin_sdpa(q.double(), k.double(), v.double(), mask).to(dtype),
        **tolerance(dtype),
        what=_("output vs F.scaled_dot_product_attention"),
        case=case,
    )
    hidden = ~mask.expand(weights.shape)
    check(
        bool((weights[hidden] == 0).all()),
        _("masked keys got a non-zero weight"),
        _("fill masked scores with -inf or the most negative float before the softmax"),
        case=case,
    )


@given(b=st.integers(1, 3), t_q=st.integers(1, 9), t_k=st.integers(2, 9), d=st.integers(1, 8), seed=seeds)
def test_sdpa_only_one_visible_key_copies_its_value(impl, b, t_q, t_k, d, seed):
    q, k = tensor((b, t_q, d), seed, scale=10.0), tensor((b, t_k, d), seed + 1, scale=10.0)
    v = tensor((b, t_k, d), seed + 2)
    chosen = torch.randint(0, t_k, (b, t_q), generator=torch.Generator().manual_seed(seed))
    mask = torch.nn.functional.one_hot(chosen, t_k).bool()
    for dtype in (torch.float32, torch.float64):
        out, weights = impl.attention.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask)
        case = _(
            "scaled_dot_product_attention(Q {q}, K {k}, V {v}, a mask {mask} that lets each query see exactly "
            "one key, {dtype})",
            q=tuple(q.shape),
            k=tuple(k.shape),
            v=tuple(v.shape),
            mask=tuple(mask.shape),
            dtype=dtype,
        )
        assert_equal(
            weights,
            mask.to(dtype),
            what=_("attention weights vs the mask"),
            case=case,
            hint=_("the only visible key must get weight exactly 1, every masked key exactly 0"),
            likely_bugs={
                _("the mask is ignored or inverted"): oracle.sdpa(q, k, v, None)[1],
                oracle.bug_descriptions()["mask_filled_with_zero"]: oracle.sdpa(q, k, v, mask, "mask_filled_with_zero")[
                    1
                ],
            },
        )
        expected = torch.gather(v, 1, chosen.unsqueeze(-1).expand(b, t_q, d)).to(dtype)
        assert_close(out, expected, what=_("output vs the value of the visible key"), case=case, **tolerance(dtype))


@given(
    b=st.integers(1, 2),
    t_q=st.integers(1, 6),
    t_k=st.integers(1, 6),
    d_k=st.integers(1, 6),
    seed=seeds,
    magnitude=st.sampled_from([1e3, 1e4, 1e5]),
)
def test_sdpa_huge_scores_float32_finite_and_gradients_finite(impl, b, t_q, t_k, d_k, seed, magnitude):
    scale = math.sqrt(magnitude)
    q, k = (
        tensor((b, t_q, d_k), seed, torch.float32, scale=scale),
        tensor((b, t_k, d_k), seed + 1, torch.float32, scale=scale),
    )
    v = tensor((b, t_k, 3), seed + 2, torch.float32)
    mask = random_mask(b, t_q, t_k, seed)
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, mask)
    hint = oracle.STABLE_HINT
    case = _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, random mask (B, T_q, T_k), torch.float32) "
        "with scores ~{magnitude}",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
        magnitude=f"{magnitude:g}",
    )
    check(
        bool(torch.isfinite(out).all() and torch.isfinite(weights).all()),
        _("NaN or inf in the output or the weights for large scores"),
        hint,
        case=case,
    )
    assert_close(
        weights.sum(-1),
        torch.ones(b, t_q),
        what=_("sum of each row of the weights"),
        case=case,
        hint=hint,
        **tolerance(torch.float32),
    )
    check(bool((weights[~mask] == 0).all()), _("masked keys got a non-zero weight"), hint, case=case)
    arg_grads, _unused = impl.gradients(impl.attention.scaled_dot_product_attention, [q, k, v, mask])
    for name, grad in zip("QKV", arg_grads[:3]):
        check(
            grad is not None and bool(torch.isfinite(grad).all()),
            _("no gradient reached {name}", name=name)
            if grad is None
            else _("NaN or inf in the gradient with respect to {name}", name=name),
            hint,
            case=case,
        )


@given(b=st.integers(1, 3), t=st.integers(2, 8), d=st.integers(1, 6), dtype=dtypes, seed=seeds, data=st.data())
def test_sdpa_permuting_keys_and_values_together_changes_nothing(impl, b, t, d, dtype, seed, data):
    perm = torch.tensor(data.draw(st.permutations(range(t))))
    q, k, v = tensor((b, 3, d), seed, dtype), tensor((b, t, d), seed + 1, dtype), tensor((b, t, 4), seed + 2, dtype)
    mask = key_padding_mask(b, t, seed)
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, mask)
    out_p, weights_p = impl.attention.scaled_dot_product_attention(q, k[:, perm], v[:, perm], mask[..., perm])
    case = _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, padding mask (B, 1, T_k), {dtype}), then with keys, "
        "values and mask permuted by {perm}",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
        dtype=dtype,
        perm=perm.tolist(),
    )
    hint = _("the keys form a set: their order must not matter")
    assert_close(
        out_p, out, what=_("output with permuted keys vs original output"), case=case, hint=hint, **tolerance(dtype)
    )
    assert_close(
        weights_p,
        weights[..., perm],
        what=_("weights with permuted keys vs permuted weights"),
        case=case,
        hint=hint,
        **tolerance(dtype),
    )


def test_sdpa_dropout_none_and_zero_probability(impl):
    q, k, v = tensor((2, 4, 3), 1), tensor((2, 5, 3), 2), tensor((2, 5, 2), 3)
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v)
    out0, weights0 = impl.attention.scaled_dot_product_attention(q, k, v, None, nn.Dropout(0.0).train())
    case0 = _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, no mask, nn.Dropout({p}) in training mode)",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
        p=0.0,
    )
    assert_close(out0, out, what=_("output with vs without the dropout"), case=case0, **tolerance(q.dtype))
    assert_close(weights0, weights, what=_("weights with vs without the dropout"), case=case0, **tolerance(q.dtype))
    out1, weights1 = impl.attention.scaled_dot_product_attention(q, k, v, None, nn.Dropout(1.0).train())
    case1 = _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, no mask, nn.Dropout({p}) in training mode)",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
        p=1.0,
    )
    assert_equal(
        weights1,
        torch.zeros_like(weights),
        what=_("weights vs all zeros"),
        case=case1,
        hint=_("apply the dropout module passed as argument to the weights"),
    )
    assert_equal(out1, torch.zeros_like(out), what=_("output vs all zeros"), case=case1)


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_sdpa_dropout_statistics(impl, p):
    q, k, v = tensor((4, 4, 16, 4), 1), tensor((4, 4, 16, 4), 2), tensor((4, 4, 16, 3), 3)
    _unused, clean = impl.attention.scaled_dot_product_attention(q, k, v)
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, None, nn.Dropout(p).train())
    dropped = (weights == 0).double().mean().item()
    # 4096 weights: the share dropped is within 0.06 of p with probability > 1 - 1e-12.
    case = _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, no mask, nn.Dropout({p}) in training mode)",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
        p=p,
    )
    check(
        abs(dropped - p) < 0.06,
        _(
            "a share of {dropped} of the returned weights is zero, expected about p = {p}",
            dropped=f"{dropped:.3f}",
            p=p,
        ),
        _("apply the given dropout module once, to the weights after the softmax"),
        case=case,
    )
    kept = weights != 0
    assert_close(
        weights[kept],
        clean[kept] / (1 - p),
        what=_("kept weights vs weights without dropout / (1 - p)"),
        case=case,
        **tolerance(q.dtype),
    )
    assert_close(
        out, weights @ v, what=_("output vs returned (dropped-out) weights @ V"), case=case, **tolerance(q.dtype)
    )


# --------------------------------------------------------------------------- multi-head attention


@pytest.mark.parametrize("d_model,heads", [(10, 3), (6, 4), (2, 4), (9, 6), (512, 7)])
def test_mha_rejects_more_indivisible_sizes(impl, d_model, heads):
    try:
        impl.attention.MultiHeadAttention(d_model, heads, dropout=0.0)
    except ValueError:
        return
    check(
        False,
        _("no ValueError although d_model is not divisible by num_heads"),
        _("check d_model % num_heads in __init__ and raise ValueError"),
        case=_("MultiHeadAttention({d_model}, {heads}, dropout=0.0)", d_model=d_model, heads=heads),
    )


@given(
    dims=bigger_model_dims(),
    b=st.integers(1, 3),
    t_q=st.integers(1, 10),
    t_k=st.integers(1, 10),
    dtype=dtypes,
    seed=seeds,
    mask_kind=st.sampled_from([None, "padding", "random", "shared", "causal"]),
)
def test_mha_bigger_models_match_nn_multihead_attention(impl, dims, b, t_q, t_k, dtype, seed, mask_kind):
    d_model, h = dims
    if mask_kind == "causal":
        t_k = t_q
    mha, state = make_mha(impl, d_model, h, dtype, seed)
    query = tensor((b, t_q, d_model), seed + 1, dtype)
    key, value = tensor((b, t_k, d_model), seed + 2, dtype), tensor((b, t_k, d_model), seed + 3, dtype)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)
    out = mha(query, key, value, mask)
    expected, expected_weights = oracle.builtin_mha_outputs(state, d_model, h, query, key, value, mask, dtype)
    tol = F32_DEEP if dtype == torch.float32 else tolerance(dtype)
    case = mha_case(d_model, h, query, key, oracle.mask_label(mask_kind), dtype)
    assert_close(
        out,
        expected,
        what=_("output vs nn.MultiheadAttention"),
        case=case,
        hint=oracle.MHA_HINT,
        **tol,
        likely_bugs=lazy_bugs(
            lambda: distinct_bugs(oracle.mha_bug_outputs(state, query, key, value, h, mask, dtype), expected)
        ),
    )
    assert_close(mha.attn_weights, expected_weights, what=_("attn_weights vs nn.MultiheadAttention"), case=case, **tol)


@given(d_model=st.integers(1, 6), b=st.integers(1, 3), t=st.integers(1, 6), dtype=dtypes, seed=seeds)
def test_mha_one_feature_per_head(impl, d_model, b, t, dtype, seed):
    mha, state = make_mha(impl, d_model, d_model, dtype, seed)
    x = tensor((b, t, d_model), seed + 1, dtype)
    mask = key_padding_mask(b, t, seed)
    expected, _unused = oracle.builtin_mha_outputs(state, d_model, d_model, x, x, x, mask, dtype)
    assert_close(
        mha(x, x, x, mask),
        expected,
        what=_("output vs nn.MultiheadAttention"),
        case=_("{call} (d_k = 1)", call=mha_case(d_model, d_model, x, x, _("padding mask (B, 1, T_k)"), dtype)),
        hint=oracle.MHA_HINT,
        **tolerance(dtype),
        likely_bugs=lazy_bugs(
            lambda: distinct_bugs(oracle.mha_bug_outputs(state, x, x, x, d_model, mask, dtype), expected)
        ),
    )


@given(
    b=st.integers(1, 3), t_q=st.integers(1, 7), t_k=st.integers(1, 7), pad=st.integers(1, 4), dtype=dtypes, seed=seeds
)
def test_mha_masked_padding_keys_change_nothing(impl, b, t_q, t_k, pad, dtype, seed):
    d_model, h = 8, 4
    mha, _unused = make_mha(impl, d_model, h, dtype, seed)
    query, memory = tensor((b, t_q, d_model), seed + 1, dtype), tensor((b, t_k, d_model), seed + 2, dtype)
    mask = key_padding_mask(b, t_k, seed)
    out = mha(query, memory, memory, mask)
    weights = mha.attn_weights
    padded = torch.cat([memory, tensor((b, pad, d_model), seed + 3, dtype, scale=10.0)], 1)
    mask_pad = torch.cat([mask, torch.zeros(b, 1, pad, dtype=torch.bool)], -1)
    hint = _("a masked key must not influence any output (mask=True means 'may attend')")
    case = _(
        "{call}, then again with {pad} masked padding keys appended",
        call=mha_case(d_model, h, query, memory, _("padding mask (B, 1, T_k)"), dtype),
        pad=pad,
    )
    assert_close(
        mha(query, padded, padded, mask_pad),
        out,
        **tolerance(dtype),
        hint=hint,
        case=case,
        what=_("output with vs without masked padding keys"),
    )
    assert_close(
        mha.attn_weights[..., :t_k],
        weights,
        **tolerance(dtype),
        hint=hint,
        case=case,
        what=_("attn_weights of the real keys with vs without padding keys"),
    )
    assert_equal(
        mha.attn_weights[..., t_k:],
        torch.zeros(b, h, t_q, pad, dtype=dtype),
        hint=hint,
        case=case,
        what=_("attn_weights of the padding keys"),
    )


def test_mha_all_true_mask_equals_no_mask(impl):
    mha, _unused = make_mha(impl, 12, 3, torch.float64, 5)
    x = tensor((2, 5, 12), 6)
    for mask in (
        torch.ones(2, 1, 5, dtype=torch.bool),
        torch.ones(2, 5, 5, dtype=torch.bool),
        torch.ones(1, 5, 5, dtype=torch.bool),
    ):
        assert_close(
            mha(x, x, x, mask),
            mha(x, x, x),
            **tolerance(torch.float64),
            what=_("output with an all-True mask vs no mask"),
            case=_(
                "MultiHeadAttention(d_model=12, h=3), self-attention on x {x}, an all-True mask {mask}, torch.float64",
                x=tuple(x.shape),
                mask=tuple(mask.shape),
            ),
            hint=_("True means 'may attend': an all-True mask hides nothing"),
        )


def test_mha_attn_weights_follow_the_latest_call(impl):
    mha, state = make_mha(impl, 8, 2, torch.float64, 31)
    a, b = tensor((2, 3, 8), 32), tensor((1, 6, 8), 33)
    mha(a, a, a)
    mha(b, b, b)
    _unused, expected = oracle.builtin_mha_outputs(state, 8, 2, b, b, b, None, torch.float64)
    assert_close(
        mha.attn_weights,
        expected,
        what=_("attn_weights after the second call"),
        case=_(
            "MultiHeadAttention(d_model=8, h=2), self-attention on x {a}, then on x {b}",
            a=tuple(a.shape),
            b=tuple(b.shape),
        ),
        hint=_("overwrite self.attn_weights on every forward"),
        **tolerance(torch.float64),
    )


def test_mha_large_inputs_stay_finite(impl):
    d_model, h = 8, 2
    state = oracle.random_mha_state(d_model, 40)
    state["w_q.weight"] = state["w_q.weight"] * 100
    state["w_k.weight"] = state["w_k.weight"] * 100
    x = tensor((2, 6, d_model), 41)
    mask = random_mask(2, 6, 6, 42)
    for dtype in (torch.float32, torch.float64):
        mha, _unused = make_mha(impl, d_model, h, dtype, 0, state={k: v.to(dtype) for k, v in state.items()})
        out = mha(x.to(dtype), x.to(dtype), x.to(dtype), mask)
        case = _(
            "{call}, w_q and w_k scaled by 100 (scores ~1e4)",
            call=mha_case(d_model, h, x, x, _("random mask (B, T_q, T_k)"), dtype),
        )
        check(
            bool(torch.isfinite(out).all()),
            _("NaN or inf in the output for large scores"),
            _("use a numerically stable softmax and mask with -inf or finfo.min"),
            case=case,
        )
    expected, _unused = oracle.builtin_mha_outputs(state, d_model, h, x, x, x, mask, torch.float64)
    assert_close(out, expected, what=_("output vs nn.MultiheadAttention"), case=case, rtol=1e-7, atol=1e-8)


def test_mha_dropout_acts_on_the_attention_weights(impl):
    """Values all equal c: with dropout on the weights, the output depends on which weights were dropped;
    with dropout anywhere before the softmax it would stay exactly w_o(c)."""
    d_model, h = 8, 2
    state = oracle.random_mha_state(d_model, 50)
    state["w_v.weight"] = torch.zeros(d_model, d_model, dtype=torch.float64)
    mha, _unused = make_mha(impl, d_model, h, torch.float64, 0, dropout=0.5, state=state)
    x = tensor((3, 8, d_model), 51)
    clean = mha(x, x, x)
    mha.train()
    noisy = mha(x, x, x)
    check(
        not torch.allclose(noisy, clean),
        _(
            "the dropout did not change the output although every value is the same vector: "
            "it is not applied to the attention weights"
        ),
        _("apply self.dropout to the attention weights after the softmax (not to the queries, keys or scores)"),
        case=_(
            "{call} in training mode, w_v.weight = 0 (every value equals w_v.bias)",
            call=mha_case(d_model, h, x, x, _("no mask"), torch.float64, dropout=0.5),
        ),
    )


def test_mha_dropout_not_on_the_output(impl):
    d_model, h = 8, 2
    state = oracle.random_mha_state(d_model, 52)
    state["w_o.weight"] = torch.zeros(d_model, d_model, dtype=torch.float64)
    mha, _unused = make_mha(impl, d_model, h, torch.float64, 0, dropout=0.5, state=state)
    mha.train()
    x = tensor((3, 8, d_model), 53)
    out = mha(x, x, x)
    assert_close(
        out,
        state["w_o.bias"].expand(3, 8, d_model),
        what=_("output vs w_o.bias"),
        case=_(
            "{call} in training mode, w_o.weight = 0",
            call=mha_case(d_model, h, x, x, _("no mask"), torch.float64, dropout=0.5),
        ),
        hint=_("the dropout belongs on the attention weights, not on the output of w_o"),
        **tolerance(torch.float64),
    )


@given(
    b=st.integers(1, 2),
    t_q=st.integers(1, 5),
    t_k=st.integers(1, 5),
    seed=seeds,
    mask_kind=st.sampled_from(["padding", "random", "shared"]),
)
def test_mha_gradients_match_nn_multihead_attention_with_masks(impl, b, t_q, t_k, seed, mask_kind):
    d_model, h = 8, 2
    mha, state = make_mha(impl, d_model, h, torch.float64, seed)
    query, key, value = (
        tensor((b, t_q, d_model), seed + 1),
        tensor((b, t_k, d_model), seed + 2),
        tensor((b, t_k, d_model), seed + 3),
    )
    mask = {
        "padding": key_padding_mask(b, t_k, seed),
        "random": random_mask(b, t_q, t_k, seed),
        "shared": random_mask(1, t_q, t_k, seed),
    }[mask_kind]
    upstream = tensor((b, t_q, d_model), seed + 4)
    arg_grads, param_grads = impl.gradients(mha, [query, key, value, mask], upstream)
    builtin = oracle.builtin_mha(state, d_model, h)
    leaves = [x.clone().requires_grad_(True) for x in (query, key, value)]
    out, _unused = oracle.run_builtin_mha(builtin, *leaves, mask)
    (out * upstream).sum().backward()
    case = mha_case(d_model, h, query, key, oracle.mask_label(mask_kind), torch.float64)
    for name, grad, leaf in zip(("query", "key", "value"), arg_grads, leaves):
        check(grad is not None, _("no gradient reached the {name} input", name=name), case=case)
        assert_close(
            grad, leaf.grad, what=_("gradient with respect to {name}", name=name), case=case, **tolerance(torch.float64)
        )
    for name, grad in oracle.builtin_mha_param_grads(builtin).items():
        check(
            param_grads.get(name) is not None,
            _("no gradient reached the parameter {name}", name=name),
            _("every projection (w_q, w_k, w_v, w_o) must be used in forward"),
            case=case,
        )
        assert_close(
            param_grads[name],
            grad,
            what=_("gradient with respect to {name}", name=name),
            case=case,
            **tolerance(torch.float64),
        )


def test_mha_parameters_and_state_dict_names(impl):
    mha = impl.attention.MultiHeadAttention(12, 4, dropout=0.0)
    names = {name: tuple(value.shape) for name, value in mha.state_dict().items()}
    expected = {
        f"{p}.{kind}": shape for p in oracle.PROJECTIONS for kind, shape in (("weight", (12, 12)), ("bias", (12,)))
    }
    problems = []
    if sorted(set(expected) - set(names)):
        problems.append(_("missing {names}", names=", ".join(sorted(set(expected) - set(names)))))
    if sorted(set(names) - set(expected)):
        problems.append(_("unexpected {names}", names=", ".join(sorted(set(names) - set(expected)))))
    for name in sorted(set(names) & set(expected)):
        if names[name] != expected[name]:
            problems.append(
                _("{name} has shape {got}, expected {expected}", name=name, got=names[name], expected=expected[name])
            )
    check(
        names == expected,
        _("wrong state_dict() entries: {problems}", problems="; ".join(problems)),
        _("four nn.Linear(d_model, d_model) called w_q, w_k, w_v, w_o with bias; no other parameters or buffers"),
        case=_("MultiHeadAttention(12, 4, dropout=0.0)"),
    )
