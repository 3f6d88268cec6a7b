"""Part `layers`: EncoderLayer and DecoderLayer (paper §3.1, Figure 1; §3.2.3 for the masks).

EncoderLayer: x = LayerNorm(x + SelfAttn(x)); x = LayerNorm(x + FFN(x))  (post-norm).
DecoderLayer: masked self-attention, cross-attention over the encoder output (memory),
feed-forward, each wrapped in Add & Norm. References: ``nn.TransformerEncoderLayer`` /
``nn.TransformerDecoderLayer`` (post-norm, ReLU, batch_first) with the same weights, and an
independent numpy float64 implementation that also names the usual mistakes.
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
from tests.support.strategies import batch_sizes, causal, dtypes, key_padding_mask, lengths, model_dims, seeds, tensor


def encoder_layer(impl, d_model, heads, d_ff, seed, dtype, dropout=0.0):
    """The student's EncoderLayer with the oracle's weights (strict load checks the names)."""
    state = oracle.encoder_layer_state(d_model, d_ff, seed)
    return load_weights(impl.layers.EncoderLayer(d_model, heads, d_ff, dropout), state, dtype), state


def decoder_layer(impl, d_model, heads, d_ff, seed, dtype, dropout=0.0):
    state = oracle.decoder_layer_state(d_model, d_ff, seed)
    return load_weights(impl.layers.DecoderLayer(d_model, heads, d_ff, dropout), state, dtype), state


ENCODER_HINT = _(
    "post-norm: x = add_norm1(x, self-attention(x, x, x, src_mask)), then x = add_norm2(x, feed_forward); "
    "compare with nn.TransformerEncoderLayer(norm_first=False)"
)
DECODER_HINT = _(
    "x = add_norm1(x, self_attn(x, x, x, tgt_mask)); x = add_norm2(x, cross_attn(x, memory, memory, src_mask)); "
    "x = add_norm3(x, feed_forward)"
)
BATCH_ROWS_HINT = _("never mix batch rows (reshape/view over the wrong axes?)")


@given(dims=model_dims(), batch=batch_sizes, length=lengths, seed=seeds, dtype=dtypes)
def test_encoder_layer_matches_builtin(impl, dims, batch, length, seed, dtype):
    d_model, heads = dims
    d_ff = 2 * d_model + 1
    layer, state = encoder_layer(impl, d_model, heads, d_ff, seed, dtype)
    x = tensor((batch, length, d_model), seed + 1, dtype)
    src_mask = key_padding_mask(batch, length, seed + 2)
    expected = oracle.builtin_encoder_layer_output(state, d_model, heads, d_ff, x, src_mask).to(dtype)
    assert_close_naming_bugs(
        layer(x, src_mask),
        expected,
        partial(oracle.encoder_bug_outputs, state, x, src_mask, heads, dtype),
        what=_("EncoderLayer output vs nn.TransformerEncoderLayer"),
        case=_(
            "EncoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}), x {x}, padding mask, {dtype}",
            d_model=d_model,
            heads=heads,
            d_ff=d_ff,
            x=tuple(x.shape),
            dtype=dtype,
        ),
        hint=ENCODER_HINT,
        **tolerance(dtype),
    )


@given(
    dims=model_dims(),
    batch=batch_sizes,
    t_src=lengths,
    t_tgt=lengths,
    seed=seeds,
    dtype=dtypes,
    per_batch_tgt_mask=st.booleans(),
)
def test_decoder_layer_matches_builtin(impl, dims, batch, t_src, t_tgt, seed, dtype, per_batch_tgt_mask):
    d_model, heads = dims
    d_ff = 2 * d_model + 1
    layer, state = decoder_layer(impl, d_model, heads, d_ff, seed, dtype)
    x = tensor((batch, t_tgt, d_model), seed + 1, dtype)
    memory = tensor((batch, t_src, d_model), seed + 2, dtype)
    src_mask = key_padding_mask(batch, t_src, seed + 3)
    tgt_mask = causal(t_tgt)
    if per_batch_tgt_mask:  # (B, T, T): target padding & causal
        tgt_mask = key_padding_mask(batch, t_tgt, seed + 4) & tgt_mask
    expected = oracle.builtin_decoder_layer_output(state, d_model, heads, d_ff, x, memory, src_mask, tgt_mask).to(dtype)
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
    try:
        actual = layer(x, memory, src_mask, tgt_mask)
    except RuntimeError as error:  # a target-length tensor in the cross-attention fails only when T_src != T_tgt
        oracle.name_decoder_crash(
            layer, state, heads, dtype, error, t_src=t_src, t_tgt=t_tgt, what=what, hint=DECODER_HINT, case=case
        )
        raise
    assert_close_naming_bugs(
        actual,
        expected,
        partial(oracle.decoder_bug_outputs, state, x, memory, src_mask, tgt_mask, heads, dtype),
        what=what,
        case=case,
        hint=DECODER_HINT,
        **tolerance(dtype),
    )


def test_decoder_cross_attention_uses_memory_and_source_mask(impl):
    # Same source and target length, so that the wrong masks/keys still have the right shape
    # and the message can name them.
    d_model, heads, d_ff, t = 8, 2, 12, 5
    layer, state = decoder_layer(impl, d_model, heads, d_ff, 3, torch.float64)
    x = tensor((2, t, d_model), 4)
    memory = tensor((2, t, d_model), 5)
    src_mask = torch.tensor([[[True] * t], [[True, True, False, False, False]]])
    tgt_mask = causal(t)
    assert_close_naming_bugs(
        layer(x, memory, src_mask, tgt_mask),
        oracle.builtin_decoder_layer_output(state, d_model, heads, d_ff, x, memory, src_mask, tgt_mask),
        what=_("DecoderLayer output vs nn.TransformerDecoderLayer"),
        case=_(
            "DecoderLayer(d_model={d_model}, num_heads={heads}, d_ff={d_ff}), x {x}, memory {memory} "
            "with source padding, causal tgt_mask, {dtype}",
            d_model=d_model,
            heads=heads,
            d_ff=d_ff,
            x=tuple(x.shape),
            memory=tuple(memory.shape),
            dtype=torch.float64,
        ),
        hint=_(
            "cross_attn(x, memory, memory, src_mask): queries from the decoder, keys and values from memory, "
            "the source padding mask"
        ),
        likely_bugs=oracle.decoder_bug_outputs(state, x, memory, src_mask, tgt_mask, heads, torch.float64),
        **tolerance(torch.float64),
    )


def test_layers_state_dict_names_follow_the_contract(impl):
    layer = impl.layers.DecoderLayer(4, 2, 6, 0.1)
    actual = set(layer.state_dict())
    expected = set(oracle.decoder_layer_state(4, 6, 0))
    check(
        actual == expected,
        _(
            "DecoderLayer state-dict keys differ from the contract: missing {missing}, unexpected {unexpected}",
            missing=sorted(expected - actual),
            unexpected=sorted(actual - expected),
        ),
        _("submodules self_attn, cross_attn (MultiHeadAttention), feed_forward, add_norm1..3 (AddNorm)"),
        case=_("DecoderLayer(d_model=4, num_heads=2, d_ff=6, dropout=0.1)"),
    )
    layer = impl.layers.EncoderLayer(4, 2, 6, 0.1)
    actual = set(layer.state_dict())
    expected = set(oracle.encoder_layer_state(4, 6, 0))
    check(
        actual == expected,
        _(
            "EncoderLayer state-dict keys differ from the contract: missing {missing}, unexpected {unexpected}",
            missing=sorted(expected - actual),
            unexpected=sorted(actual - expected),
        ),
        _("submodules self_attn (MultiHeadAttention), feed_forward, add_norm1, add_norm2 (AddNorm)"),
        case=_("EncoderLayer(d_model=4, num_heads=2, d_ff=6, dropout=0.1)"),
    )


@given(dims=model_dims(), batch=batch_sizes, length=lengths, extra=st.integers(1, 4), seed=seeds, dtype=dtypes)
def test_encoder_layer_ignores_appended_padding(impl, dims, batch, length, extra, seed, dtype):
    d_model, heads = dims
    layer, _state = encoder_layer(impl, d_model, heads, 2 * d_model, seed, dtype)
    x = tensor((batch, length, d_model), seed + 1, dtype)
    mask = torch.ones(batch, 1, length, dtype=torch.bool)
    padded_x = torch.cat([x, tensor((batch, extra, d_model), seed + 2, dtype, scale=5.0)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(batch, 1, extra, dtype=torch.bool)], dim=2)
    assert_close(
        layer(padded_x, padded_mask)[:, :length],
        layer(x, mask),
        what=_("EncoderLayer outputs at the real positions, with vs without appended padding"),
        case=_(
            "x {x} plus {extra} appended positions masked out in src_mask, {dtype}",
            x=tuple(x.shape),
            extra=extra,
            dtype=dtype,
        ),
        hint=_("pass src_mask to self-attention: padding keys must get exactly zero attention weight"),
        **tolerance(dtype),
    )


@given(dims=model_dims(), t_tgt=st.integers(2, 7), j=st.integers(1, 6), seed=seeds, dtype=dtypes)
def test_decoder_layer_is_causal(impl, dims, t_tgt, j, seed, dtype):
    j = min(j, t_tgt - 1)
    d_model, heads = dims
    layer, _state = decoder_layer(impl, d_model, heads, 2 * d_model, seed, dtype)
    x = tensor((2, t_tgt, d_model), seed + 1, dtype)
    memory = tensor((2, 4, d_model), seed + 2, dtype)
    src_mask = key_padding_mask(2, 4, seed + 3)
    changed = x.clone()
    changed[:, j:] = tensor((2, t_tgt - j, d_model), seed + 4, dtype)
    before = layer(x, memory, src_mask, causal(t_tgt))
    after = layer(changed, memory, src_mask, causal(t_tgt))
    assert_close(
        after[:, :j],
        before[:, :j],
        what=_("DecoderLayer outputs before the changed target positions"),
        case=_(
            "x {x}, the target changed from position {j} on, causal tgt_mask, {dtype}",
            x=tuple(x.shape),
            j=j,
            dtype=dtype,
        ),
        hint=_("pass tgt_mask to the decoder's self-attention: position i may only see positions <= i"),
        **tolerance(dtype),
    )


@given(dims=model_dims(), batch=st.integers(2, 3), length=lengths, seed=seeds, dtype=dtypes)
def test_layers_treat_batch_rows_independently(impl, dims, batch, length, seed, dtype):
    d_model, heads = dims
    enc, _state = encoder_layer(impl, d_model, heads, 2 * d_model, seed, dtype)
    dec, _state = decoder_layer(impl, d_model, heads, 2 * d_model, seed + 1, dtype)
    x = tensor((batch, length, d_model), seed + 2, dtype)
    mask = key_padding_mask(batch, length, seed + 3)
    y = tensor((batch, 3, d_model), seed + 4, dtype)
    tgt_mask = key_padding_mask(batch, 3, seed + 5) & causal(3)
    whole_enc = enc(x, mask)
    whole_dec = dec(y, x, mask, tgt_mask)
    for b in range(batch):
        case = _("batch row {b} of {batch}, x {x}, {dtype}", b=b, batch=batch, x=tuple(x.shape), dtype=dtype)
        assert_close(
            enc(x[b : b + 1], mask[b : b + 1]),
            whole_enc[b : b + 1],
            what=_("EncoderLayer on one batch row alone vs in the whole batch"),
            case=case,
            hint=BATCH_ROWS_HINT,
            **tolerance(dtype),
        )
        assert_close(
            dec(y[b : b + 1], x[b : b + 1], mask[b : b + 1], tgt_mask[b : b + 1]),
            whole_dec[b : b + 1],
            what=_("DecoderLayer on one batch row alone vs in the whole batch"),
            case=case,
            hint=BATCH_ROWS_HINT,
            **tolerance(dtype),
        )


def test_layers_length_one_and_single_head(impl):
    d_model, heads, d_ff = 5, 1, 7
    enc, enc_state = encoder_layer(impl, d_model, heads, d_ff, 21, torch.float64)
    x = tensor((2, 1, d_model), 22)
    mask = torch.ones(2, 1, 1, dtype=torch.bool)
    assert_close_naming_bugs(
        enc(x, mask),
        oracle.builtin_encoder_layer_output(enc_state, d_model, heads, d_ff, x, mask),
        what=_("EncoderLayer output vs nn.TransformerEncoderLayer"),
        case=_("one head, sequences of length 1: x {x}, {dtype}", x=tuple(x.shape), dtype=torch.float64),
        hint=ENCODER_HINT,
        likely_bugs=oracle.encoder_bug_outputs(enc_state, x, mask, heads, torch.float64),
        **tolerance(torch.float64),
    )
    dec, dec_state = decoder_layer(impl, d_model, heads, d_ff, 23, torch.float64)
    memory = tensor((2, 3, d_model), 24)
    src_mask = torch.tensor([[[True, True, True]], [[True, False, False]]])
    assert_close_naming_bugs(
        dec(x, memory, src_mask, causal(1)),
        oracle.builtin_decoder_layer_output(dec_state, d_model, heads, d_ff, x, memory, src_mask, causal(1)),
        what=_("DecoderLayer output vs nn.TransformerDecoderLayer"),
        case=_(
            "one head, a target of length 1: x {x}, memory {memory}, {dtype}",
            x=tuple(x.shape),
            memory=tuple(memory.shape),
            dtype=torch.float64,
        ),
        hint=DECODER_HINT,
        likely_bugs=oracle.decoder_bug_outputs(dec_state, x, memory, src_mask, causal(1), heads, torch.float64),
        **tolerance(torch.float64),
    )


def test_layers_dropout_only_in_training_mode(impl):
    d_model, heads, d_ff = 16, 4, 32
    x = tensor((2, 6, d_model), 31, torch.float32)
    memory = tensor((2, 5, d_model), 32, torch.float32)
    src_mask = key_padding_mask(2, 5, 33)
    enc, enc_state = encoder_layer(impl, d_model, heads, d_ff, 34, torch.float32, dropout=0.5)
    dec, dec_state = decoder_layer(impl, d_model, heads, d_ff, 35, torch.float32, dropout=0.5)
    runs = {
        "EncoderLayer": (
            enc,
            (memory, src_mask),
            oracle.builtin_encoder_layer_output(enc_state, d_model, heads, d_ff, memory, src_mask),
        ),
        "DecoderLayer": (
            dec,
            (x, memory, src_mask, causal(6)),
            oracle.builtin_decoder_layer_output(dec_state, d_model, heads, d_ff, x, memory, src_mask, causal(6)),
        ),
    }
    for name, (layer, args, expected) in runs.items():
        layer.eval()
        case = _("{layer}(dropout=0.5), float32", layer=name)
        assert_close(
            layer(*args),
            expected.float(),
            what=_("output in evaluation mode vs the reference without dropout"),
            case=case,
            hint=_("every dropout must be an nn.Dropout (or depend on self.training): none may act after .eval()"),
            **tolerance(torch.float32),
        )
        layer.train()
        first, second = layer(*args), layer(*args)
        check(
            bool((first - expected.float()).abs().max() > 1e-3) and bool((first - second).abs().max() > 1e-3),
            _("dropout does nothing in training mode: the output is the evaluation-mode one (or the same twice)"),
            _("pass the dropout rate on to the attention, feed-forward and Add & Norm submodules"),
            case=case,
        )
