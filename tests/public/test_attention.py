"""Part `attention`: scaled_dot_product_attention and MultiHeadAttention (paper §3.2.1, §3.2.2).

Convention: bool masks, True = this key may be attended to.
References: a numpy float64 oracle, ``F.scaled_dot_product_attention`` and
``nn.MultiheadAttention(batch_first=True)`` with the same weights.
Tolerances: float64 results within rtol 1e-9 / atol 1e-10 of the float64 reference, float32
results within rtol 1e-4 / atol 1e-5 (``checks.tolerance``).
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from grader.i18n import _
from tests.support.builders import make_mha
from tests.support.checks import assert_close, assert_equal, check, tolerance
from tests.support.likely_bugs import distinct_bugs, lazy_bugs, matching_bug
from tests.support.oracles import attention as oracle
from tests.support.strategies import (
    attention_mask,
    attention_shapes,
    dtypes,
    key_padding_mask,
    lengths,
    model_dims,
    random_mask,
    seeds,
    tensor,
)

leading_axes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
mask_kinds = st.sampled_from([None, "padding", "random"])

SDPA_HINT = _(
    "weights = softmax(Q Kᵀ / sqrt(d_k), dim=-1) with masked scores filled BEFORE the softmax; output = weights @ V"
)
MASK_FILL_HINT = _(
    "mask=True means 'may attend'; fill the scores where mask is False with -inf or the most negative "
    "float before the softmax (a modest value such as -1e4 is not enough)"
)


def sdpa_case(q, k, v, mask_kind, dtype):
    """The input description of a scaled_dot_product_attention call."""
    return _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, {mask}, {dtype})",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
        mask=oracle.mask_label(mask_kind),
        dtype=dtype,
    )


def check_masked_keys_get_zero(weights, q, k, v, mask, case):
    """Masked keys get exactly zero weight; when they don't, name the mask bug if it is a known one."""
    __tracebackhide__ = True
    leaked = weights[~mask.expand(weights.shape)]
    ok = bool((leaked == 0).all())
    bug = None
    if not ok:
        mask_bugs = oracle.sdpa_bug_outputs(
            q, k, v, mask, torch.float64, "weights", variants=("mask_inverted", "mask_ignored", "mask_filled_with_zero")
        )
        bug = matching_bug(weights, mask_bugs)
    message = bug or _(
        "{count} masked keys got a non-zero weight (largest {largest})",
        count=int((leaked != 0).sum()),
        largest=f"{leaked.abs().max().item() if leaked.numel() else 0:.3g}",
    )
    check(ok, message, MASK_FILL_HINT, case=case, likely_bug=bug is not None)


# --------------------------------------------------------------------------- scaled dot-product attention


@given(lead=leading_axes, shape=attention_shapes(), dtype=dtypes, seed=seeds, mask_kind=mask_kinds)
def test_sdpa_weights_are_masked_distributions_and_output_is_weights_at_v(impl, lead, shape, dtype, seed, mask_kind):
    b, t_q, t_k, d_k, d_v = shape
    q = tensor(lead + (b, t_q, d_k), seed, dtype, scale=3.0)
    k = tensor(lead + (b, t_k, d_k), seed + 1, dtype, scale=3.0)
    v = tensor(lead + (b, t_k, d_v), seed + 2, dtype)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)  # (B, 1|T_q, T_k): broadcasts over the leading axes
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, mask)
    case = sdpa_case(q, k, v, mask_kind, dtype)
    check(
        tuple(out.shape) == lead + (b, t_q, d_v),
        _("output shape {got}, expected {expected}", got=tuple(out.shape), expected=lead + (b, t_q, d_v)),
        _("the output is (..., T_q, d_v); keep every leading axis (use @ and transpose(-2, -1))"),
        case=case,
    )
    check(
        tuple(weights.shape) == lead + (b, t_q, t_k),
        _("weights shape {got}, expected {expected}", got=tuple(weights.shape), expected=lead + (b, t_q, t_k)),
        _("the weights are (..., T_q, T_k)"),
        case=case,
    )
    check(
        out.dtype == dtype and weights.dtype == dtype,
        _(
            "dtypes {out} (output) and {weights} (weights), expected {expected}",
            out=out.dtype,
            weights=weights.dtype,
            expected=dtype,
        ),
        _("no hard-coded dtypes: follow the input's dtype"),
        case=case,
    )
    check(
        bool((weights >= 0).all()),
        _("some attention weights are negative"),
        _("weights come from a softmax"),
        case=case,
    )
    descriptions = oracle.bug_descriptions()
    assert_close(
        weights.sum(-1),
        torch.ones(lead + (b, t_q), dtype=dtype),
        what=_("sum of each row of the weights"),
        case=case,
        hint=_("softmax over the key axis (dim=-1), masking BEFORE the softmax, so each query's weights sum to 1"),
        **tolerance(dtype),
        likely_bugs=distinct_bugs(
            {
                descriptions["softmax_over_queries"]: oracle.sdpa(q, k, v, mask, variant="softmax_over_queries")[1].sum(
                    -1
                ),
                descriptions["mask_after_softmax"]: oracle.sdpa(q, k, v, mask, variant="mask_after_softmax")[1].sum(-1),
            },
            torch.ones(lead + (b, t_q)),
        ),
    )
    if mask is not None:
        check_masked_keys_get_zero(weights, q, k, v, mask, case)
    assert_close(
        out,
        (weights.double() @ v.double()).to(dtype),
        **tolerance(dtype),
        what=_("output vs weights @ V"),
        case=case,
        hint=_("return (weights @ value, weights) with the same weights"),
    )


@given(lead=leading_axes, shape=attention_shapes(), dtype=dtypes, seed=seeds, mask_kind=mask_kinds)
def test_sdpa_matches_numpy_oracle_and_torch_builtin(impl, lead, shape, dtype, seed, mask_kind):
    b, t_q, t_k, d_k, d_v = shape
    q = tensor(lead + (b, t_q, d_k), seed, dtype, scale=1.5)
    k = tensor(lead + (b, t_k, d_k), seed + 1, dtype, scale=1.5)
    v = tensor(lead + (b, t_k, d_v), seed + 2, dtype)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, mask)
    expected_out, expected_weights = oracle.sdpa(q, k, v, mask)
    expected_out = torch.from_numpy(expected_out).to(dtype)
    expected_weights = torch.from_numpy(expected_weights).to(dtype)
    case = sdpa_case(q, k, v, mask_kind, dtype)
    assert_close(
        weights,
        expected_weights,
        what=_("attention weights vs numpy float64"),
        case=case,
        hint=SDPA_HINT,
        **tolerance(dtype),
        likely_bugs=lazy_bugs(
            lambda: distinct_bugs(oracle.sdpa_bug_outputs(q, k, v, mask, dtype, "weights"), expected_weights)
        ),
    )
    assert_close(
        out,
        expected_out,
        what=_("output vs numpy float64"),
        case=case,
        hint=SDPA_HINT,
        **tolerance(dtype),
        likely_bugs=lazy_bugs(lambda: distinct_bugs(oracle.sdpa_bug_outputs(q, k, v, mask, dtype), expected_out)),
    )
    builtin = oracle.builtin_sdpa(q.double(), k.double(), v.double(), mask).to(dtype)
    assert_close(
        out, builtin, what=_("output vs F.scaled_dot_product_attention"), case=case, hint=SDPA_HINT, **tolerance(dtype)
    )


@given(shape=attention_shapes(), seed=seeds, mask_kind=mask_kinds)
def test_sdpa_huge_scores_stay_finite(impl, shape, seed, mask_kind):
    b, t_q, t_k, d_k, d_v = shape
    # Entries ~100: dot products Q·K of order 1e4.
    q, k = tensor((b, t_q, d_k), seed, scale=100.0), tensor((b, t_k, d_k), seed + 1, scale=100.0)
    v = tensor((b, t_k, d_v), seed + 2)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)
    hint = oracle.STABLE_HINT
    for dtype in (torch.float32, torch.float64):
        out, weights = impl.attention.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask)
        case = _("{call} with scores ~1e4", call=sdpa_case(q, k, v, mask_kind, dtype))
        check(
            bool(torch.isfinite(out).all() and torch.isfinite(weights).all()),
            _("NaN or inf in the output or the weights for large scores"),
            hint,
            case=case,
        )
        assert_close(
            weights.sum(-1),
            torch.ones(b, t_q, dtype=dtype),
            **tolerance(dtype),
            hint=hint,
            what=_("sum of each row of the weights"),
            case=case,
        )
    expected_out, expected_weights = oracle.sdpa(q, k, v, mask)
    assert_close(
        out,
        torch.from_numpy(expected_out),
        what=_("output vs numpy float64"),
        case=case,
        hint=hint,
        **tolerance(torch.float64),
    )
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


@given(shape=attention_shapes(), dtype=dtypes, seed=seeds, mask_kind=mask_kinds)
def test_sdpa_gradients_match_torch_builtin(impl, shape, dtype, seed, mask_kind):
    b, t_q, t_k, d_k, d_v = shape
    q, k = tensor((b, t_q, d_k), seed, dtype), tensor((b, t_k, d_k), seed + 1, dtype)
    v = tensor((b, t_k, d_v), seed + 2, dtype)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)
    upstream = tensor((b, t_q, d_v), seed + 3, dtype)
    arg_grads, _unused = impl.gradients(impl.attention.scaled_dot_product_attention, [q, k, v, mask], upstream)
    leaves = [x.double().requires_grad_(True) for x in (q, k, v)]
    (oracle.builtin_sdpa(*leaves, mask) * upstream.double()).sum().backward()
    case = sdpa_case(q, k, v, mask_kind, dtype)
    for name, grad, leaf in zip("QKV", arg_grads, leaves):
        check(
            grad is not None,
            _("no gradient reached {name}", name=name),
            _("build the result from differentiable torch operations"),
            case=case,
        )
        assert_close(
            grad,
            leaf.grad.to(dtype),
            **tolerance(dtype),
            what=_("gradient with respect to {name}", name=name),
            case=case,
            hint=_("compare with F.scaled_dot_product_attention; avoid in-place ops on tensors autograd needs"),
        )


@given(b=st.integers(1, 2), t=lengths, d=st.integers(1, 5), dtype=dtypes, seed=seeds, data=st.data())
def test_sdpa_self_attention_is_permutation_equivariant(impl, b, t, d, dtype, seed, data):
    perm = torch.tensor(data.draw(st.permutations(range(t))))
    x = tensor((b, t, d), seed, dtype)
    out, weights = impl.attention.scaled_dot_product_attention(x, x, x)
    xp = x[:, perm]
    out_p, weights_p = impl.attention.scaled_dot_product_attention(xp, xp, xp)
    case = _(
        "self-attention without a mask on x {x} ({dtype}), positions permuted by {perm}",
        x=tuple(x.shape),
        dtype=dtype,
        perm=perm.tolist(),
    )
    hint = _("attention has no notion of position: permuting the inputs must permute the outputs the same way")
    assert_close(
        out_p,
        out[:, perm],
        what=_("output of the permuted input vs permuted output"),
        case=case,
        hint=hint,
        **tolerance(dtype),
    )
    assert_close(
        weights_p,
        weights[:, perm][:, :, perm],
        what=_("weights of the permuted input vs permuted weights"),
        case=case,
        hint=hint,
        **tolerance(dtype),
    )


@given(shape=attention_shapes(), pad=st.integers(1, 3), dtype=dtypes, seed=seeds, mask_kind=mask_kinds)
def test_sdpa_masked_padding_keys_change_nothing(impl, shape, pad, dtype, seed, mask_kind):
    b, t_q, t_k, d_k, d_v = shape
    q, k = tensor((b, t_q, d_k), seed, dtype), tensor((b, t_k, d_k), seed + 1, dtype)
    v = tensor((b, t_k, d_v), seed + 2, dtype)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)
    base_mask = torch.ones(b, 1, t_k, dtype=torch.bool) if mask is None else mask
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, mask)
    k_pad = torch.cat([k, tensor((b, pad, d_k), seed + 3, dtype, scale=5.0)], 1)
    v_pad = torch.cat([v, tensor((b, pad, d_v), seed + 4, dtype, scale=5.0)], 1)
    mask_pad = torch.cat([base_mask, torch.zeros(b, base_mask.size(1), pad, dtype=torch.bool)], -1)
    out_pad, weights_pad = impl.attention.scaled_dot_product_attention(q, k_pad, v_pad, mask_pad)
    case = _(
        "{call}, then again with {pad} masked padding keys appended", call=sdpa_case(q, k, v, mask_kind, dtype), pad=pad
    )
    hint = _("masked keys must get exactly zero weight, whatever their values")
    assert_close(
        out_pad, out, what=_("output with vs without masked padding keys"), case=case, hint=hint, **tolerance(dtype)
    )
    assert_close(
        weights_pad[..., :t_k],
        weights,
        what=_("weights of the real keys with vs without padding keys"),
        case=case,
        hint=hint,
        **tolerance(dtype),
    )
    assert_equal(
        weights_pad[..., t_k:],
        torch.zeros(b, t_q, pad, dtype=dtype),
        what=_("weights of the padding keys"),
        case=case,
        hint=hint,
    )


def test_sdpa_dropout_in_eval_mode_changes_nothing(impl):
    q, k, v = tensor((2, 3, 5, 4), 1), tensor((2, 3, 6, 4), 2), tensor((2, 3, 6, 3), 3)
    mask = key_padding_mask(2, 6, 4).unsqueeze(1)
    out, weights = impl.attention.scaled_dot_product_attention(q, k, v, mask)
    dropout = nn.Dropout(0.5).eval()
    case = _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, padding mask {mask}, nn.Dropout(0.5) in eval mode)",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
        mask=tuple(mask.shape),
    )
    for _call in range(2):
        out_d, weights_d = impl.attention.scaled_dot_product_attention(q, k, v, mask, dropout)
        assert_close(
            weights_d,
            weights,
            what=_("weights with vs without the dropout"),
            case=case,
            **tolerance(q.dtype),
            hint=_("call the dropout module given as argument; in eval mode it is the identity"),
        )
        assert_close(out_d, out, what=_("output with vs without the dropout"), case=case, **tolerance(q.dtype))


def test_sdpa_dropout_in_training_mode_drops_weights(impl):
    q, k, v = tensor((2, 3, 5, 4), 1), tensor((2, 3, 6, 4), 2), tensor((2, 3, 6, 3), 3)
    p = 0.5
    _unused, clean = impl.attention.scaled_dot_product_attention(q, k, v)
    dropout = nn.Dropout(p).train()
    out1, w1 = impl.attention.scaled_dot_product_attention(q, k, v, None, dropout)
    out2, w2 = impl.attention.scaled_dot_product_attention(q, k, v, None, dropout)
    hint = _("apply the given dropout to the attention weights (after the softmax), and return the dropped-out weights")
    case = _(
        "scaled_dot_product_attention(Q {q}, K {k}, V {v}, no mask, nn.Dropout(0.5) in training mode)",
        q=tuple(q.shape),
        k=tuple(k.shape),
        v=tuple(v.shape),
    )
    check(
        bool((w1 == 0).any()) and bool((w1 != 0).any()),
        _("none of the returned weights is zero: the dropout was not applied to the attention weights")
        if not bool((w1 == 0).any())
        else _("every returned weight is zero, expected only some"),
        hint,
        case=case,
    )
    kept = w1 != 0
    assert_close(
        w1[kept],
        (clean[kept] / (1 - p)),
        what=_("kept weights vs weights without dropout / (1 - p)"),
        case=case,
        hint=hint,
        **tolerance(q.dtype),
    )
    check(not torch.equal(w1, w2), _("two calls in training mode returned identical weights"), hint, case=case)
    for out, w in ((out1, w1), (out2, w2)):
        assert_close(
            out,
            w @ v,
            what=_("output vs returned (dropped-out) weights @ V"),
            case=case,
            **tolerance(q.dtype),
            hint=_("return the weights that were actually multiplied with V"),
        )


# --------------------------------------------------------------------------- multi-head attention


def test_mha_rejects_d_model_not_divisible_by_heads(impl):
    for d_model, heads in ((10, 3), (6, 4), (7, 2)):
        try:
            impl.attention.MultiHeadAttention(d_model, heads)
        except ValueError:
            continue
        check(
            False,
            _("no ValueError although d_model is not divisible by num_heads"),
            _("check d_model % num_heads in __init__ and raise ValueError"),
            case=_("MultiHeadAttention({d_model}, {heads})", d_model=d_model, heads=heads),
        )


@given(
    dims=model_dims(),
    b=st.integers(1, 3),
    t=lengths,
    dtype=dtypes,
    seed=seeds,
    mask_kind=st.sampled_from([None, "padding", "random", "shared", "causal"]),
)
def test_mha_self_attention_matches_nn_multihead_attention(impl, dims, b, t, dtype, seed, mask_kind):
    d_model, h = dims
    mha, state = make_mha(impl, d_model, h, dtype, seed)
    x = tensor((b, t, d_model), seed + 1, dtype)
    mask = attention_mask(mask_kind, b, t, t, seed)
    out = mha(x, x, x, mask)
    expected, expected_weights = oracle.builtin_mha_outputs(state, d_model, h, x, x, x, mask, dtype)
    case = _(
        "MultiHeadAttention(d_model={d_model}, h={h}), self-attention on x {x}, {mask}, {dtype}",
        d_model=d_model,
        h=h,
        x=tuple(x.shape),
        mask=oracle.mask_label(mask_kind),
        dtype=dtype,
    )
    assert_close(
        out,
        expected,
        what=_("output vs nn.MultiheadAttention"),
        case=case,
        hint=oracle.MHA_HINT,
        **tolerance(dtype),
        likely_bugs=lazy_bugs(lambda: distinct_bugs(oracle.mha_bug_outputs(state, x, x, x, h, mask, dtype), expected)),
    )
    assert_close(
        mha.attn_weights,
        expected_weights,
        what=_("attn_weights (B, h, T_q, T_k) vs nn.MultiheadAttention"),
        case=case,
        hint=_("attn_weights are the per-head softmax weights"),
        **tolerance(dtype),
    )


@given(
    dims=model_dims(),
    b=st.integers(1, 3),
    t_q=lengths,
    t_k=lengths,
    dtype=dtypes,
    seed=seeds,
    mask_kind=st.sampled_from([None, "padding", "random", "shared"]),
)
def test_mha_cross_attention_matches_nn_multihead_attention(impl, dims, b, t_q, t_k, dtype, seed, mask_kind):
    d_model, h = dims
    mha, state = make_mha(impl, d_model, h, dtype, seed)
    query = tensor((b, t_q, d_model), seed + 1, dtype)
    key, value = tensor((b, t_k, d_model), seed + 2, dtype), tensor((b, t_k, d_model), seed + 3, dtype)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)
    out = mha(query, key, value, mask)
    expected, expected_weights = oracle.builtin_mha_outputs(state, d_model, h, query, key, value, mask, dtype)
    case = _(
        "MultiHeadAttention(d_model={d_model}, h={h}), cross-attention with query {query}, key and value {memory}, "
        "{mask}, {dtype}",
        d_model=d_model,
        h=h,
        query=tuple(query.shape),
        memory=tuple(key.shape),
        mask=oracle.mask_label(mask_kind),
        dtype=dtype,
    )
    assert_close(
        out,
        expected,
        what=_("output vs nn.MultiheadAttention"),
        case=case,
        hint=oracle.MHA_HINT,
        **tolerance(dtype),
        likely_bugs=lazy_bugs(
            lambda: distinct_bugs(oracle.mha_bug_outputs(state, query, key, value, h, mask, dtype), expected)
        ),
    )
    assert_close(
        mha.attn_weights,
        expected_weights,
        what=_("attn_weights vs nn.MultiheadAttention"),
        case=case,
        **tolerance(dtype),
        hint=_("queries come from `query`, keys from `key`, values from `value`"),
    )


@given(dims=model_dims(), b=st.integers(1, 3), t_q=lengths, t_k=lengths, seed=seeds, mask_kind=mask_kinds)
def test_mha_matches_numpy_oracle_float64(impl, dims, b, t_q, t_k, seed, mask_kind):
    d_model, h = dims
    mha, state = make_mha(impl, d_model, h, torch.float64, seed)
    query, memory = tensor((b, t_q, d_model), seed + 1), tensor((b, t_k, d_model), seed + 2, scale=2.0)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)
    out = mha(query, memory, memory, mask)
    expected, expected_weights = oracle.multi_head_attention(state, query, memory, memory, h, mask)
    expected = torch.from_numpy(expected)
    case = _(
        "MultiHeadAttention(d_model={d_model}, h={h}), query {query}, key and value {memory}, {mask}, {dtype}",
        d_model=d_model,
        h=h,
        query=tuple(query.shape),
        memory=tuple(memory.shape),
        mask=oracle.mask_label(mask_kind),
        dtype=torch.float64,
    )
    assert_close(
        out,
        expected,
        what=_("output vs numpy float64"),
        case=case,
        hint=oracle.MHA_HINT,
        **tolerance(torch.float64),
        likely_bugs=lazy_bugs(
            lambda: distinct_bugs(
                oracle.mha_bug_outputs(state, query, memory, memory, h, mask, torch.float64), expected
            )
        ),
    )
    assert_close(
        mha.attn_weights,
        torch.from_numpy(expected_weights),
        what=_("attn_weights vs numpy float64"),
        case=case,
        **tolerance(torch.float64),
    )


@pytest.mark.parametrize("mask_shape", ["(B, 1, T_k)", "(B, T_q, T_k)", "(1, T_q, T_k)"])
def test_mha_accepts_every_mask_shape(impl, mask_shape):
    b, t_q, t_k, d_model, h = 3, 4, 5, 8, 2
    mha, state = make_mha(impl, d_model, h, torch.float64, 7)
    query, memory = tensor((b, t_q, d_model), 8), tensor((b, t_k, d_model), 9)
    if mask_shape == "(B, 1, T_k)":
        mask = key_padding_mask(b, t_k, 10)
    elif mask_shape == "(B, T_q, T_k)":
        mask = random_mask(b, t_q, t_k, 10)
    else:  # (1, T_q, T_k)
        mask = random_mask(1, t_q, t_k, 10)
    out = mha(query, memory, memory, mask)
    expected, _unused = oracle.builtin_mha_outputs(state, d_model, h, query, memory, memory, mask, torch.float64)
    case = _(
        "MultiHeadAttention(d_model={d_model}, h={h}), query {query}, key and value {memory}, "
        "a mask of shape {mask_shape} = {shape}",
        d_model=d_model,
        h=h,
        query=tuple(query.shape),
        memory=tuple(memory.shape),
        mask_shape=mask_shape,
        shape=tuple(mask.shape),
    )
    assert_close(
        out,
        expected,
        what=_("output vs nn.MultiheadAttention"),
        case=case,
        **tolerance(torch.float64),
        hint=_("insert the head axis with mask.unsqueeze(1) so that the mask broadcasts against (B, h, T_q, T_k)"),
        likely_bugs=lazy_bugs(
            lambda: distinct_bugs(
                oracle.mha_bug_outputs(state, query, memory, memory, h, mask, torch.float64), expected
            )
        ),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mha_single_head_and_length_one(impl, dtype):
    for d_model, h, t_q, t_k in ((5, 1, 4, 3), (6, 3, 1, 1), (4, 1, 1, 1), (6, 2, 1, 4)):
        mha, state = make_mha(impl, d_model, h, dtype, d_model * 10 + h)
        query, memory = tensor((2, t_q, d_model), 1, dtype), tensor((2, t_k, d_model), 2, dtype)
        out = mha(query, memory, memory)
        expected, _unused = oracle.builtin_mha_outputs(state, d_model, h, query, memory, memory, None, dtype)
        case = _(
            "MultiHeadAttention(d_model={d_model}, h={h}), query {query}, key and value {memory}, no mask, {dtype}",
            d_model=d_model,
            h=h,
            query=tuple(query.shape),
            memory=tuple(memory.shape),
            dtype=dtype,
        )
        assert_close(
            out,
            expected,
            what=_("output vs nn.MultiheadAttention"),
            case=case,
            hint=_("{steps}; don't squeeze away axes of size 1", steps=oracle.MHA_HINT),
            **tolerance(dtype),
        )


@given(dims=model_dims(), b=st.integers(1, 2), t=lengths, dtype=dtypes, seed=seeds, data=st.data())
def test_mha_self_attention_is_permutation_equivariant(impl, dims, b, t, dtype, seed, data):
    d_model, h = dims
    perm = torch.tensor(data.draw(st.permutations(range(t))))
    mha, _unused = make_mha(impl, d_model, h, dtype, seed)
    x = tensor((b, t, d_model), seed + 1, dtype)
    out = mha(x, x, x)
    xp = x[:, perm]
    assert_close(
        mha(xp, xp, xp),
        out[:, perm],
        **tolerance(dtype),
        what=_("output of the permuted input vs permuted output"),
        case=_(
            "MultiHeadAttention(d_model={d_model}, h={h}), self-attention without a mask on x {x} ({dtype}), "
            "positions permuted by {perm}",
            d_model=d_model,
            h=h,
            x=tuple(x.shape),
            dtype=dtype,
            perm=perm.tolist(),
        ),
        hint=_("without a mask, attention treats positions as a set: only the order of the output rows may change"),
    )


@given(dims=model_dims(), b=st.integers(2, 3), t_q=lengths, t_k=lengths, dtype=dtypes, seed=seeds, mask_kind=mask_kinds)
def test_mha_batch_elements_are_independent(impl, dims, b, t_q, t_k, dtype, seed, mask_kind):
    d_model, h = dims
    mha, _unused = make_mha(impl, d_model, h, dtype, seed)
    query, memory = tensor((b, t_q, d_model), seed + 1, dtype), tensor((b, t_k, d_model), seed + 2, dtype)
    mask = attention_mask(mask_kind, b, t_q, t_k, seed)
    out = mha(query, memory, memory, mask)
    for i in range(b):
        alone = mha(query[i : i + 1], memory[i : i + 1], memory[i : i + 1], None if mask is None else mask[i : i + 1])
        assert_close(
            out[i : i + 1],
            alone,
            **tolerance(dtype),
            what=_("batch element {i} computed in the batch vs alone", i=i),
            case=_(
                "MultiHeadAttention(d_model={d_model}, h={h}), query {query}, key and value {memory}, {mask}, {dtype}",
                d_model=d_model,
                h=h,
                query=tuple(query.shape),
                memory=tuple(memory.shape),
                mask=oracle.mask_label(mask_kind),
                dtype=dtype,
            ),
            hint=_("split heads with view(B, T, h, d_k) + transpose(1, 2): never mix the batch axis with others"),
        )


def test_mha_dropout_only_in_training_mode(impl):
    d_model, h = 8, 2
    query, memory = tensor((2, 5, d_model), 1), tensor((2, 6, d_model), 2)
    mask = key_padding_mask(2, 6, 3)
    mha, state = make_mha(impl, d_model, h, torch.float64, 4, dropout=0.5)  # in eval mode
    expected, _unused = oracle.builtin_mha_outputs(state, d_model, h, query, memory, memory, mask, torch.float64)
    case = _(
        "MultiHeadAttention(d_model={d_model}, h={h}, dropout=0.5), query {query}, key and value {memory}, "
        "padding mask",
        d_model=d_model,
        h=h,
        query=tuple(query.shape),
        memory=tuple(memory.shape),
    )
    for _call in range(2):
        assert_close(
            mha(query, memory, memory, mask),
            expected,
            **tolerance(torch.float64),
            what=_("output in eval mode vs nn.MultiheadAttention without dropout"),
            case=case,
            hint=_("use self.dropout (an nn.Dropout module), which is the identity after .eval()"),
        )
    mha.train()
    first, second = mha(query, memory, memory, mask), mha(query, memory, memory, mask)
    hint = _("apply self.dropout (nn.Dropout(dropout)) to the attention weights")
    check(not torch.allclose(first, second), _("two calls in training mode gave the same output"), hint, case=case)
    check(
        not torch.allclose(first, expected),
        _("the output in training mode equals the eval-mode output"),
        hint,
        case=case,
    )


def test_mha_gradients_match_nn_multihead_attention(impl):
    d_model, h, b, t_q, t_k = 6, 3, 2, 4, 5
    mha, state = make_mha(impl, d_model, h, torch.float64, 21)
    query, key, value = tensor((b, t_q, d_model), 22), tensor((b, t_k, d_model), 23), tensor((b, t_k, d_model), 24)
    mask = key_padding_mask(b, t_k, 25)
    upstream = tensor((b, t_q, d_model), 26)
    arg_grads, param_grads = impl.gradients(mha, [query, key, value, mask], upstream)
    builtin = oracle.builtin_mha(state, d_model, h)
    leaves = [x.clone().requires_grad_(True) for x in (query, key, value)]
    out, _unused = oracle.run_builtin_mha(builtin, *leaves, mask)
    (out * upstream).sum().backward()
    case = _(
        "MultiHeadAttention(d_model={d_model}, h={h}), query {query}, key and value {memory}, padding mask, "
        "torch.float64",
        d_model=d_model,
        h=h,
        query=tuple(query.shape),
        memory=tuple(key.shape),
    )
    for name, grad, leaf in zip(("query", "key", "value"), arg_grads, leaves):
        check(grad is not None, _("no gradient reached the {name} input", name=name), case=case)
        assert_close(
            grad, leaf.grad, what=_("gradient with respect to {name}", name=name), case=case, **tolerance(torch.float64)
        )
    expected = oracle.builtin_mha_param_grads(builtin)
    for name, grad in expected.items():
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
