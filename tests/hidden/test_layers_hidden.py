"""Part `layers` (hidden): EncoderLayer and DecoderLayer (paper §3.1, Figure 1; §3.2.3).

Wider layers, longer sequences, fresh weights, gradients against the built-ins
(nn.TransformerEncoderLayer / nn.TransformerDecoderLayer), and more invariants.
"""

from functools import partial

import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.builders import load_weights
from tests.support.checks import assert_close, check, tolerance
from tests.support.likely_bugs import assert_close_naming_bugs
from tests.support.oracles import layers as oracle
from tests.support.strategies import causal, dtypes, key_padding_mask, random_mask, seeds, tensor

NO_SQUEEZE_HINT = _("no squeeze(): keep every axis even when it has size 1")
EVERY_SUBMODULE_HINT = _("every submodule takes part")

wide_dims = st.sampled_from([(16, 1), (16, 2), (16, 4), (24, 3), (32, 8), (12, 6)])


@given(dims=wide_dims, batch=st.integers(1, 4), length=st.integers(1, 12), seed=seeds, dtype=dtypes)
def test_encoder_layer_matches_builtin_wider(impl, dims, batch, length, seed, dtype):
    d_model, heads = dims
    d_ff = 4 * d_model
    state = oracle.encoder_layer_state(d_model, d_ff, seed + 1000)
    layer = load_weights(impl.layers.EncoderLayer(d_model, heads, d_ff, 0.2), state, dtype)
    x = tensor((batch, length, d_model), seed + 1001, dtype, scale=2.0)
    mask = key_padding_mask(batch, length, seed + 1002)
    expected = oracle.builtin_encoder_layer_output(state, d_model, heads, d_ff, x, mask)
    assert_close_naming_bugs(
        layer(x, mask),
        expected.to(dtype),
        partial(oracle.encoder_bug_outputs, state, x, mask, heads, dtype),
        what=_("EncoderLayer output vs nn.TransformerEncoderLayer"),
        case=_(
            "EncoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}), x {x}, padding mask, {dtype}",
            d_model=d_model,
            heads=heads,
            d_ff=d_ff,
            x=tuple(x.shape),
            dtype=dtype,
        ),
        hint=_("post-norm Add & Norm around self-attention (with src_mask), then around the feed-forward network"),
        **tolerance(dtype),
    )


@given(
    dims=wide_dims,
    batch=st.integers(1, 4),
    t_src=st.integers(1, 12),
    t_tgt=st.integers(1, 12),
    seed=seeds,
    dtype=dtypes,
)
def test_decoder_layer_matches_builtin_wider(impl, dims, batch, t_src, t_tgt, seed, dtype):
    d_model, heads = dims
    d_ff = 4 * d_model
    state = oracle.decoder_layer_state(d_model, d_ff, seed + 2000)
    layer = load_weights(impl.layers.DecoderLayer(d_model, heads, d_ff, 0.2), state, dtype)
    x = tensor((batch, t_tgt, d_model), seed + 2001, dtype, scale=2.0)
    memory = tensor((batch, t_src, d_model), seed + 2002, dtype, scale=2.0)
    src_mask = key_padding_mask(batch, t_src, seed + 2003)
    tgt_mask = key_padding_mask(batch, t_tgt, seed + 2004) & causal(t_tgt)
    expected = oracle.builtin_decoder_layer_output(state, d_model, heads, d_ff, x, memory, src_mask, tgt_mask)
    what = _("DecoderLayer output vs nn.TransformerDecoderLayer")
    case = _(
        "DecoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}), x {x}, memory {memory}, "
        "tgt_mask {tgt_mask}, {dtype}",
        d_model=d_model,
        heads=heads,
        d_ff=d_ff,
        x=tuple(x.shape),
        memory=tuple(memory.shape),
        tgt_mask=tuple(tgt_mask.shape),
        dtype=dtype,
    )
    hint = _("masked self-attention (tgt_mask), cross-attention (memory, src_mask), feed-forward; post-norm")
    try:
        actual = layer(x, memory, src_mask, tgt_mask)
    except RuntimeError as error:  # a target-length tensor in the cross-attention fails only when T_src != T_tgt
        oracle.name_decoder_crash(
            layer, state, heads, dtype, error, t_src=t_src, t_tgt=t_tgt, what=what, hint=hint, case=case
        )
        raise
    assert_close_naming_bugs(
        actual,
        expected.to(dtype),
        partial(oracle.decoder_bug_outputs, state, x, memory, src_mask, tgt_mask, heads, dtype),
        what=what,
        case=case,
        hint=hint,
        **tolerance(dtype),
    )


@given(seed=seeds, t=st.integers(1, 6))
def test_encoder_layer_accepts_arbitrary_attention_masks(impl, seed, t):
    # The contract passes src_mask straight to self-attention, so a (B, T, T) mask works too.
    d_model, heads, d_ff = 8, 2, 10
    state = oracle.encoder_layer_state(d_model, d_ff, seed)
    layer = load_weights(impl.layers.EncoderLayer(d_model, heads, d_ff, 0.0), state, torch.float64)
    x = tensor((2, t, d_model), seed + 1)
    mask = random_mask(2, t, t, seed + 2)
    expected = oracle.encoder_layer(state, x, mask, heads)
    assert_close_naming_bugs(
        layer(x, mask),
        torch.from_numpy(expected),
        what=_("EncoderLayer output with a (B, T, T) attention mask vs numpy float64"),
        case=_(
            "EncoderLayer(d_model=8, num_heads=2, d_ff=10), x {x}, a random src_mask of shape {mask}, {dtype}",
            x=tuple(x.shape),
            mask=tuple(mask.shape),
            dtype=torch.float64,
        ),
        hint=_("pass src_mask unchanged to self_attn(x, x, x, src_mask)"),
        **tolerance(torch.float64),
    )


def test_encoder_layer_input_and_parameter_gradients_match_builtin(impl):
    d_model, heads, d_ff = 12, 3, 20
    state = oracle.encoder_layer_state(d_model, d_ff, 3001)
    layer = load_weights(impl.layers.EncoderLayer(d_model, heads, d_ff, 0.0), state, torch.float64)
    x = tensor((3, 5, d_model), 3002)
    mask = key_padding_mask(3, 5, 3003)
    upstream = tensor((3, 5, d_model), 3004)
    (x_grad, _mask_grad), param_grads = impl.gradients(layer, [x, mask], upstream)
    builtin = oracle.builtin_encoder_layer(state, d_model, heads, d_ff)
    leaf = x.clone().requires_grad_(True)
    (oracle.run_builtin_encoder_layer(builtin, leaf, mask) * upstream).sum().backward()
    case = _(
        "EncoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}), x {x}, padding mask, {dtype}",
        d_model=d_model,
        heads=heads,
        d_ff=d_ff,
        x=tuple(x.shape),
        dtype=torch.float64,
    )
    assert_close_naming_bugs(
        x_grad,
        leaf.grad,
        what=_("gradient of the output with respect to x"),
        case=case,
        hint=_("the forward must be differentiable end to end (no .detach(), no numpy)"),
        **tolerance(torch.float64),
    )
    expected = oracle.builtin_to_contract_encoder_layer({n: p.grad for n, p in builtin.named_parameters()})
    check(
        set(param_grads) == set(expected),
        _(
            "the parameters {actual} differ from the contract's {expected}",
            actual=sorted(param_grads),
            expected=sorted(expected),
        ),
        case=case,
    )
    for name, grad in expected.items():
        check(
            param_grads[name] is not None,
            _("parameter {name} gets no gradient", name=name),
            EVERY_SUBMODULE_HINT,
            case=case,
        )
        assert_close_naming_bugs(
            param_grads[name],
            grad,
            what=_("gradient with respect to {name}", name=name),
            case=case,
            hint=_("compare the forward with nn.TransformerEncoderLayer"),
            **tolerance(torch.float64),
        )


def test_decoder_layer_input_and_parameter_gradients_match_builtin(impl):
    d_model, heads, d_ff = 12, 4, 20
    state = oracle.decoder_layer_state(d_model, d_ff, 3101)
    layer = load_weights(impl.layers.DecoderLayer(d_model, heads, d_ff, 0.0), state, torch.float64)
    x = tensor((2, 4, d_model), 3102)
    memory = tensor((2, 6, d_model), 3103)
    src_mask = key_padding_mask(2, 6, 3104)
    tgt_mask = causal(4)
    upstream = tensor((2, 4, d_model), 3105)
    (x_grad, memory_grad, _src_mask_grad, _tgt_mask_grad), param_grads = impl.gradients(
        layer, [x, memory, src_mask, tgt_mask], upstream
    )
    builtin = oracle.builtin_decoder_layer(state, d_model, heads, d_ff)
    x_leaf, m_leaf = x.clone().requires_grad_(True), memory.clone().requires_grad_(True)
    (oracle.run_builtin_decoder_layer(builtin, x_leaf, m_leaf, src_mask, tgt_mask, heads) * upstream).sum().backward()
    case = _(
        "DecoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}), x {x}, memory {memory}, "
        "tgt_mask {tgt_mask}, {dtype}",
        d_model=d_model,
        heads=heads,
        d_ff=d_ff,
        x=tuple(x.shape),
        memory=tuple(memory.shape),
        tgt_mask=tuple(tgt_mask.shape),
        dtype=torch.float64,
    )
    assert_close_naming_bugs(
        x_grad,
        x_leaf.grad,
        what=_("gradient of the output with respect to x"),
        case=case,
        hint=_("the forward must be differentiable end to end"),
        **tolerance(torch.float64),
    )
    check(
        memory_grad is not None,
        _("the output of DecoderLayer does not depend on memory"),
        "cross_attn(x, memory, memory, src_mask)",
        case=case,
    )
    assert_close_naming_bugs(
        memory_grad,
        m_leaf.grad,
        what=_("gradient of the output with respect to memory"),
        case=case,
        hint=_("keys and values of the cross-attention come from memory; padded source positions get zero gradient"),
        **tolerance(torch.float64),
    )
    expected = oracle.builtin_to_contract_decoder_layer({n: p.grad for n, p in builtin.named_parameters()})
    for name, grad in expected.items():
        check(
            param_grads.get(name) is not None,
            _("parameter {name} gets no gradient", name=name),
            EVERY_SUBMODULE_HINT,
            case=case,
        )
        assert_close_naming_bugs(
            param_grads[name],
            grad,
            what=_("gradient with respect to {name}", name=name),
            case=case,
            hint=_("compare the forward with nn.TransformerDecoderLayer"),
            **tolerance(torch.float64),
        )


@given(seed=seeds, t=st.integers(2, 7), dtype=dtypes)
def test_encoder_layer_is_permutation_equivariant(impl, seed, t, dtype):
    # No positional information inside a layer: permuting the positions permutes the output.
    d_model, heads = 8, 2
    state = oracle.encoder_layer_state(d_model, 16, seed)
    layer = load_weights(impl.layers.EncoderLayer(d_model, heads, 16, 0.0), state, dtype)
    x = tensor((2, t, d_model), seed + 1, dtype)
    mask = key_padding_mask(2, t, seed + 2)
    perm = torch.randperm(t, generator=torch.Generator().manual_seed(seed))
    assert_close(
        layer(x[:, perm], mask[:, :, perm]),
        layer(x, mask)[:, perm],
        what=_("EncoderLayer on permuted positions vs the permuted output"),
        case=_("x {x}, permutation {perm}, {dtype}", x=tuple(x.shape), perm=perm.tolist(), dtype=dtype),
        hint=_("each position attends by content only; do not mix positions except through attention"),
        **tolerance(dtype),
    )


@given(seed=seeds, extra=st.integers(1, 4), t_src=st.integers(1, 5), dtype=dtypes)
def test_decoder_layer_ignores_appended_memory_padding(impl, seed, extra, t_src, dtype):
    d_model, heads = 8, 4
    state = oracle.decoder_layer_state(d_model, 16, seed)
    layer = load_weights(impl.layers.DecoderLayer(d_model, heads, 16, 0.0), state, dtype)
    x = tensor((2, 3, d_model), seed + 1, dtype)
    memory = tensor((2, t_src, d_model), seed + 2, dtype)
    src_mask = torch.ones(2, 1, t_src, dtype=torch.bool)
    padded = torch.cat([memory, tensor((2, extra, d_model), seed + 3, dtype, scale=10.0)], dim=1)
    padded_mask = torch.cat([src_mask, torch.zeros(2, 1, extra, dtype=torch.bool)], dim=2)
    assert_close(
        layer(x, padded, padded_mask, causal(3)),
        layer(x, memory, src_mask, causal(3)),
        what=_("DecoderLayer output with vs without masked positions appended to memory"),
        case=_(
            "x {x}, memory {memory} plus {extra} appended positions masked out in src_mask, {dtype}",
            x=tuple(x.shape),
            memory=tuple(memory.shape),
            extra=extra,
            dtype=dtype,
        ),
        hint=_("cross-attention must use src_mask: padded source positions get zero weight"),
        **tolerance(dtype),
    )


@given(seed=seeds, t=st.integers(1, 6))
def test_decoder_layer_shared_and_per_batch_causal_masks_agree(impl, seed, t):
    d_model, heads = 8, 2
    state = oracle.decoder_layer_state(d_model, 12, seed)
    layer = load_weights(impl.layers.DecoderLayer(d_model, heads, 12, 0.0), state, torch.float64)
    x = tensor((3, t, d_model), seed + 1)
    memory = tensor((3, 4, d_model), seed + 2)
    src_mask = key_padding_mask(3, 4, seed + 3)
    assert_close(
        layer(x, memory, src_mask, causal(t).expand(3, t, t).clone()),
        layer(x, memory, src_mask, causal(t)),
        what=_("DecoderLayer with tgt_mask of shape (B, T, T) vs the same mask as (1, T, T)"),
        case=_("x {x}, causal tgt_mask, {dtype}", x=tuple(x.shape), dtype=torch.float64),
        hint=_("the mask broadcasts over the batch (and, after unsqueeze(1), over the heads)"),
        **tolerance(torch.float64),
    )


@given(seed=seeds, t_tgt=st.integers(2, 8), j=st.integers(1, 7))
def test_decoder_layer_causal_with_target_padding(impl, seed, t_tgt, j):
    j = min(j, t_tgt - 1)
    d_model, heads = 12, 3
    state = oracle.decoder_layer_state(d_model, 12, seed)
    layer = load_weights(impl.layers.DecoderLayer(d_model, heads, 12, 0.0), state, torch.float64)
    x = tensor((3, t_tgt, d_model), seed + 1)
    memory = tensor((3, 5, d_model), seed + 2)
    src_mask = key_padding_mask(3, 5, seed + 3)
    tgt_mask = key_padding_mask(3, t_tgt, seed + 4) & causal(t_tgt)
    changed = x.clone()
    changed[:, j:] = -changed[:, j:] + 1.0
    assert_close(
        layer(changed, memory, src_mask, tgt_mask)[:, :j],
        layer(x, memory, src_mask, tgt_mask)[:, :j],
        what=_("DecoderLayer outputs before the changed target positions"),
        case=_(
            "x {x}, the target changed from position {j} on, tgt_mask = target padding & causal, {dtype}",
            x=tuple(x.shape),
            j=j,
            dtype=torch.float64,
        ),
        hint=_("self-attention with tgt_mask; cross-attention never sees the target"),
        **tolerance(torch.float64),
    )


def test_layers_length_one_everywhere(impl):
    d_model, heads, d_ff = 6, 3, 4
    state = oracle.decoder_layer_state(d_model, d_ff, 3201)
    layer = load_weights(impl.layers.DecoderLayer(d_model, heads, d_ff, 0.0), state, torch.float32)
    x = tensor((1, 1, d_model), 3202, torch.float32)
    memory = tensor((1, 1, d_model), 3203, torch.float32)
    src_mask = torch.ones(1, 1, 1, dtype=torch.bool)
    expected = oracle.decoder_layer(state, x, memory, src_mask, causal(1), heads)
    assert_close(
        layer(x, memory, src_mask, causal(1)),
        torch.from_numpy(expected).float(),
        what=_("DecoderLayer output vs numpy float64"),
        case=_(
            "batch 1, target length 1 and source length 1: x {x}, memory {memory}, {dtype}",
            x=tuple(x.shape),
            memory=tuple(memory.shape),
            dtype=torch.float32,
        ),
        hint=NO_SQUEEZE_HINT,
        **tolerance(torch.float32),
    )
    state = oracle.encoder_layer_state(d_model, d_ff, 3204)
    layer = load_weights(impl.layers.EncoderLayer(d_model, heads, d_ff, 0.0), state, torch.float32)
    expected = oracle.encoder_layer(state, x, src_mask, heads)
    assert_close(
        layer(x, src_mask),
        torch.from_numpy(expected).float(),
        what=_("EncoderLayer output vs numpy float64"),
        case=_("batch 1 and length 1: x {x}, {dtype}", x=tuple(x.shape), dtype=torch.float32),
        hint=NO_SQUEEZE_HINT,
        **tolerance(torch.float32),
    )


def test_layers_float32_and_float64_agree(impl):
    d_model, heads, d_ff = 16, 4, 24
    state = oracle.encoder_layer_state(d_model, d_ff, 3301)
    single = load_weights(impl.layers.EncoderLayer(d_model, heads, d_ff, 0.0), state, torch.float32)
    double = load_weights(impl.layers.EncoderLayer(d_model, heads, d_ff, 0.0), state, torch.float64)
    x = tensor((2, 7, d_model), 3302)
    mask = key_padding_mask(2, 7, 3303)
    out32, out64 = single(x.float(), mask), double(x, mask)
    case = _(
        "EncoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}), x {x}, padding mask",
        d_model=d_model,
        heads=heads,
        d_ff=d_ff,
        x=tuple(x.shape),
    )
    check(
        out32.dtype == torch.float32 and out64.dtype == torch.float64,
        _(
            "the outputs have dtypes {single} / {double} for float32 / float64 inputs",
            single=out32.dtype,
            double=out64.dtype,
        ),
        _("no hard-coded dtypes: masks are bool, constants follow the input"),
        case=case,
    )
    assert_close(
        out32,
        out64.float(),
        what=_("EncoderLayer in float32 vs float64 with the same weights"),
        case=case,
        hint=_("no hard-coded dtypes"),
        **tolerance(torch.float32),
    )


def test_layers_training_mode_with_dropout_zero_is_deterministic(impl):
    d_model, heads, d_ff = 8, 2, 8
    state = oracle.decoder_layer_state(d_model, d_ff, 3401)
    layer = load_weights(impl.layers.DecoderLayer(d_model, heads, d_ff, 0.0), state, torch.float64)
    layer.train()
    x = tensor((2, 3, d_model), 3402)
    memory = tensor((2, 4, d_model), 3403)
    src_mask = key_padding_mask(2, 4, 3404)
    expected = oracle.decoder_layer(state, x, memory, src_mask, causal(3), heads)
    assert_close_naming_bugs(
        layer(x, memory, src_mask, causal(3)),
        torch.from_numpy(expected),
        what=_("output in training mode with dropout 0 vs numpy float64"),
        case=_(
            "DecoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}, dropout=0.0), x {x}, "
            "memory {memory}, {dtype}",
            d_model=d_model,
            heads=heads,
            d_ff=d_ff,
            x=tuple(x.shape),
            memory=tuple(memory.shape),
            dtype=torch.float64,
        ),
        hint=_("with dropout 0 training mode computes exactly what evaluation mode does"),
        **tolerance(torch.float64),
    )


def test_layers_dropout_rate_reaches_the_sublayers(impl):
    # With dropout 1.0 every sublayer output is zeroed in training mode, leaving
    # LayerNorm(x) at each step: the output equals the three norms applied to x in turn.
    d_model, heads, d_ff = 8, 2, 8
    state = oracle.encoder_layer_state(d_model, d_ff, 3501)
    layer = load_weights(impl.layers.EncoderLayer(d_model, heads, d_ff, 1.0), state, torch.float64)
    layer.train()
    x = tensor((2, 4, d_model), 3502)
    mask = key_padding_mask(2, 4, 3503)
    sd = oracle.numpy_state(state)
    expected = oracle.layer_norm(
        oracle.layer_norm(x.numpy(), sd["add_norm1.norm.weight"], sd["add_norm1.norm.bias"]),
        sd["add_norm2.norm.weight"],
        sd["add_norm2.norm.bias"],
    )
    assert_close_naming_bugs(
        layer(x, mask),
        torch.from_numpy(expected),
        what=_("output in training mode with every sublayer output dropped (it must be norm2(norm1(x)))"),
        case=_(
            "EncoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}, dropout=1.0), x {x}, {dtype}",
            d_model=d_model,
            heads=heads,
            d_ff=d_ff,
            x=tuple(x.shape),
            dtype=torch.float64,
        ),
        hint=_("AddNorm(d_model, dropout) must drop the sublayer output (norm(x + dropout(sublayer(x))))"),
        **tolerance(torch.float64),
    )
