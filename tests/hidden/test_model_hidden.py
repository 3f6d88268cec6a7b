"""Part `model` (hidden): Encoder, Decoder and the full Transformer (paper §3.1, Figure 1).

Larger configurations, other pad ids, fresh weights, parameter gradients against the model
assembled from PyTorch built-ins, the contract's default sizes, and edge cases.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.builders import batch_inputs, make_model
from tests.support.checks import assert_close, check, tolerance
from tests.support.likely_bugs import assert_close_naming_bugs
from tests.support.oracles import layers as layer_oracle
from tests.support.oracles import model as oracle
from tests.support.strategies import causal, dtypes, fewer_examples, int_tensor, key_padding_mask, seeds, tensor

DEFAULTS_HINT = _("defaults: d_model=512, num_heads=8, num_layers=6, d_ff=2048, max_len=5000")
NO_HARD_CODED_DTYPES = _("no hard-coded dtypes")


def cfg_text(cfg):
    """The constructor arguments of ``cfg`` as a student would write them."""
    return ", ".join(f"{k}={v}" for k, v in cfg.kwargs().items() if k != "dropout")


configs = st.sampled_from(
    [
        oracle.Config(src_vocab=23, tgt_vocab=17, d_model=16, num_heads=4, num_layers=3, d_ff=32, max_len=40, pad_id=0),
        oracle.Config(src_vocab=7, tgt_vocab=13, d_model=12, num_heads=3, num_layers=2, d_ff=20, max_len=30, pad_id=2),
        oracle.Config(src_vocab=9, tgt_vocab=9, d_model=6, num_heads=1, num_layers=1, d_ff=6, max_len=16, pad_id=8),
        oracle.Config(src_vocab=15, tgt_vocab=11, d_model=8, num_heads=8, num_layers=4, d_ff=8, max_len=20, pad_id=1),
    ]
)


@given(
    cfg=configs, batch=st.integers(1, 4), t_src=st.integers(1, 12), t_tgt=st.integers(1, 12), seed=seeds, dtype=dtypes
)
def test_transformer_forward_matches_builtin_more_configs(impl, cfg, batch, t_src, t_tgt, seed, dtype):
    model, state = make_model(impl, cfg, seed + 5000, dtype)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, seed + 5001, batch, t_src, t_tgt)
    reference = oracle.BuiltinTransformer(state, cfg)
    with torch.no_grad():
        expected = reference.forward(src, tgt, src_mask, tgt_mask)

    def bugs():
        return {k: v.to(dtype) for k, v in reference.bug_outputs(src, tgt, src_mask, tgt_mask).items()}

    assert_close_naming_bugs(
        model(src, tgt, src_mask, tgt_mask),
        expected.to(dtype),
        bugs,
        what=_("logits vs the model built from PyTorch modules"),
        case=_(
            "Transformer({config}), src {src}, tgt {tgt}, padded batch, {dtype}",
            config=cfg_text(cfg),
            src=tuple(src.shape),
            tgt=tuple(tgt.shape),
            dtype=dtype,
        ),
        hint="generator(decode(tgt, encode(src, src_mask), src_mask, tgt_mask))",
        **tolerance(dtype, stack=True),
    )


def _builtin_grads(reference: oracle.BuiltinTransformer, cfg, src, tgt, src_mask, tgt_mask, upstream) -> dict:
    """Parameter gradients of the built-in model under the contract's names."""
    modules = (reference.src_embed, reference.tgt_embed, reference.encoder, reference.decoder, reference.generator)
    for module in modules:
        module.zero_grad(set_to_none=True)
    (reference.forward(src, tgt, src_mask, tgt_mask) * upstream).sum().backward()
    grads = {
        "src_embed.embedding.weight": reference.src_embed.weight.grad,
        "tgt_embed.embedding.weight": reference.tgt_embed.weight.grad,
        "generator.weight": reference.generator.weight.grad,
        "generator.bias": reference.generator.bias.grad,
    }
    enc = {n: p.grad for n, p in reference.encoder.named_parameters()}
    dec = {n: p.grad for n, p in reference.decoder.named_parameters()}
    for i in range(cfg.num_layers):
        grads.update(
            layer_oracle.with_prefix(
                layer_oracle.builtin_to_contract_encoder_layer(layer_oracle.strip_prefix(enc, f"layers.{i}.")),
                f"encoder.layers.{i}.",
            )
        )
        grads.update(
            layer_oracle.with_prefix(
                layer_oracle.builtin_to_contract_decoder_layer(layer_oracle.strip_prefix(dec, f"layers.{i}.")),
                f"decoder.layers.{i}.",
            )
        )
    return grads


def test_transformer_parameter_gradients_match_builtin(impl):
    cfg = oracle.Config(src_vocab=10, tgt_vocab=8, d_model=8, num_heads=2, num_layers=2, d_ff=12, max_len=12, pad_id=3)
    model, state = make_model(impl, cfg, 5101)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, 5102, 3, 6, 5)
    upstream = tensor((3, 5, cfg.tgt_vocab), 5103)
    _input_grads, grads = impl.gradients(model, [src, tgt, src_mask, tgt_mask], upstream)
    expected = _builtin_grads(oracle.BuiltinTransformer(state, cfg), cfg, src, tgt, src_mask, tgt_mask, upstream)
    case = _(
        "Transformer({config}), src {src}, tgt {tgt}, padded batch, {dtype}",
        config=cfg_text(cfg),
        src=tuple(src.shape),
        tgt=tuple(tgt.shape),
        dtype=torch.float64,
    )
    check(
        set(grads) == set(expected),
        _(
            "the parameters differ from the contract: missing {missing}, unexpected {unexpected}",
            missing=sorted(set(expected) - set(grads))[:6],
            unexpected=sorted(set(grads) - set(expected))[:6],
        ),
        case=case,
    )
    for name, grad in sorted(expected.items()):
        check(
            grads[name] is not None,
            _("parameter {name} gets no gradient", name=name),
            _("every submodule takes part in forward"),
            case=case,
        )
        assert_close_naming_bugs(
            grads[name],
            grad,
            what=_("gradient of the logits with respect to {name}", name=name),
            case=case,
            hint=_(
                "the embedding pad rows get no gradient (padding_idx=pad_id); compare the forward "
                "with the built-in model"
            ),
            **tolerance(torch.float64, stack=True),
        )


def test_transformer_default_sizes_follow_the_paper(impl):
    model = impl.model.Transformer(11, 13)
    state = model.state_dict()
    shapes = {
        "src_embed.embedding.weight": (11, 512),
        "tgt_embed.embedding.weight": (13, 512),
        "positional.pe": (5000, 512),
        "encoder.layers.5.feed_forward.w_1.weight": (2048, 512),
        "decoder.layers.5.cross_attn.w_q.weight": (512, 512),
        "generator.weight": (13, 512),
    }
    case = _("Transformer(11, 13) with the default arguments")
    for name, shape in shapes.items():
        check(name in state, _("no state-dict entry {name}", name=name), DEFAULTS_HINT, case=case)
        check(
            tuple(state[name].shape) == shape,
            _(
                "{name} has shape {actual}, expected {expected}",
                name=name,
                actual=tuple(state[name].shape),
                expected=shape,
            ),
            DEFAULTS_HINT,
            case=case,
        )
    check(
        len(model.encoder.layers) == 6 and len(model.decoder.layers) == 6,
        _("the model does not have 6 encoder and 6 decoder layers"),
        _("num_layers defaults to 6"),
        case=case,
    )
    check(model.pad_id == 0, _("pad_id is {value}, expected the default 0", value=repr(model.pad_id)), case=case)


def test_transformer_length_one_source_and_target(impl):
    cfg = oracle.Config(num_layers=1)
    model, state = make_model(impl, cfg, 5201)
    src, tgt = torch.tensor([[4], [7]]), torch.tensor([[2], [5]])
    src_mask, tgt_mask = torch.ones(2, 1, 1, dtype=torch.bool), causal(1)
    with torch.no_grad():
        expected = oracle.BuiltinTransformer(state, cfg).forward(src, tgt, src_mask, tgt_mask)
    assert_close_naming_bugs(
        model(src, tgt, src_mask, tgt_mask),
        expected,
        what=_("logits vs the model built from PyTorch modules"),
        case=_(
            "a source and a target of length 1: src {src}, tgt {tgt}, {dtype}",
            src=tuple(src.shape),
            tgt=tuple(tgt.shape),
            dtype=torch.float64,
        ),
        hint=_("no squeeze(): keep every axis even when it has size 1"),
        **tolerance(torch.float64, stack=True),
    )


@fewer_examples()
@given(seed=seeds, dtype=dtypes)
def test_encode_depends_only_on_the_source(impl, seed, dtype):
    cfg = oracle.Config(d_model=12, num_heads=3)
    model, state = make_model(impl, cfg, seed + 5300, dtype)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, seed + 5301, 2, 7, 6)
    case = _(
        "Transformer(d_model=12, num_heads=3), src {src}, tgt {tgt}, padded batch, {dtype}",
        src=tuple(src.shape),
        tgt=tuple(tgt.shape),
        dtype=dtype,
    )
    memory = model.encode(src, src_mask)
    check(
        tuple(memory.shape) == (2, 7, 12) and memory.dtype == dtype,
        _(
            "encode returned shape {shape} / {actual_dtype}, expected (2, 7, 12) / {dtype}",
            shape=tuple(memory.shape),
            actual_dtype=memory.dtype,
            dtype=dtype,
        ),
        _("memory has shape (B, T_src, d_model) and the model's dtype"),
        case=case,
    )
    with torch.no_grad():
        expected = oracle.BuiltinTransformer(state, cfg).encode(src, src_mask)
    assert_close_naming_bugs(
        memory,
        expected.to(dtype),
        what=_("output of encode (the memory) vs the built-in encoder"),
        case=case,
        hint="encoder(positional(src_embed(src)), src_mask)",
        **tolerance(dtype, stack=True),
    )
    hidden = model.decode(tgt, memory, src_mask, tgt_mask)
    check(
        tuple(hidden.shape) == (2, 6, 12),
        _("decode returned shape {shape}, expected (B, T_tgt, d_model) = (2, 6, 12)", shape=tuple(hidden.shape)),
        _("decode stops before the generator"),
        case=case,
    )


@fewer_examples()
@given(seed=seeds)
def test_decoder_attends_to_the_given_memory(impl, seed):
    cfg = oracle.Config()
    model, state = make_model(impl, cfg, seed + 5400)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, seed + 5401, 2, 5, 4)
    memory = tensor((2, 5, cfg.d_model), seed + 5402, scale=2.0)  # any memory, not an encoder output
    with torch.no_grad():
        expected = oracle.BuiltinTransformer(state, cfg).decode(tgt, memory, src_mask, tgt_mask)
    assert_close_naming_bugs(
        model.decode(tgt, memory, src_mask, tgt_mask),
        expected,
        what=_("output of decode with a given memory vs the built-in decoder"),
        case=_(
            "tgt {tgt}, a random memory {memory} (not an encoder output), {dtype}",
            tgt=tuple(tgt.shape),
            memory=tuple(memory.shape),
            dtype=torch.float64,
        ),
        hint=_("decode must use its memory argument in every decoder layer (not re-encode anything)"),
        **tolerance(torch.float64, stack=True),
    )


@fewer_examples()
@given(seed=seeds, extra=st.integers(1, 6))
def test_transformer_ignores_source_padding_token_values(impl, seed, extra):
    cfg = oracle.Config(pad_id=2)
    model, _state = make_model(impl, cfg, seed + 5500)
    src, tgt, _src_mask, tgt_mask = batch_inputs(cfg, seed + 5501, 2, 4, 4)
    src_mask = torch.ones(2, 1, 4 + extra, dtype=torch.bool)
    src_mask[:, :, 4:] = False
    padded = torch.cat([src, torch.full((2, extra), cfg.pad_id)], dim=1)
    other = torch.cat([src, int_tensor((2, extra), seed, 0, cfg.src_vocab)], dim=1)
    assert_close(
        model(other, tgt, src_mask, tgt_mask),
        model(padded, tgt, src_mask, tgt_mask),
        what=_("logits with other tokens at the masked source positions vs with padding there"),
        case=_(
            "src {src} whose last {extra} positions are masked out in src_mask, {dtype}",
            src=tuple(padded.shape),
            extra=extra,
            dtype=torch.float64,
        ),
        hint=_("masked source positions must not influence anything: src_mask everywhere"),
        **tolerance(torch.float64),
    )


def test_transformer_float32_matches_float64(impl):
    cfg = oracle.Config(d_model=16, num_heads=4, num_layers=3, d_ff=32)
    single, state = make_model(impl, cfg, 5601, torch.float32)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, 5602, 3, 8, 7)
    with torch.no_grad():
        expected = oracle.BuiltinTransformer(state, cfg).forward(src, tgt, src_mask, tgt_mask)
    case = _(
        "Transformer({config}) in float32, src {src}, tgt {tgt}, padded batch",
        config=cfg_text(cfg),
        src=tuple(src.shape),
        tgt=tuple(tgt.shape),
    )
    logits = single(src, tgt, src_mask, tgt_mask)
    check(
        logits.dtype == torch.float32,
        _("the float32 model returned {dtype} logits", dtype=logits.dtype),
        NO_HARD_CODED_DTYPES,
        case=case,
    )
    assert_close(
        logits,
        expected.float(),
        what=_("float32 logits vs the float64 built-in model"),
        case=case,
        hint=NO_HARD_CODED_DTYPES,
        **tolerance(torch.float32, stack=True),
    )


def test_transformer_dropout_changes_outputs_only_in_training(impl):
    cfg = oracle.Config(d_model=16, num_heads=2)
    model, state = make_model(impl, cfg, 5701, torch.float64, dropout=0.3)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, 5702, 2, 6, 6)
    model.train()
    trained = model(src, tgt, src_mask, tgt_mask)
    model.eval()
    first, second = model(src, tgt, src_mask, tgt_mask), model(src, tgt, src_mask, tgt_mask)
    case = _(
        "Transformer(d_model=16, num_heads=2, dropout=0.3), src {src}, tgt {tgt}, {dtype}",
        src=tuple(src.shape),
        tgt=tuple(tgt.shape),
        dtype=torch.float64,
    )
    assert_close(
        first,
        second,
        what=_("two evaluation-mode forwards of the same batch"),
        case=case,
        hint=_("nothing random in evaluation mode"),
        rtol=0.0,
        atol=0.0,
    )
    with torch.no_grad():
        expected = oracle.BuiltinTransformer(state, cfg).forward(src, tgt, src_mask, tgt_mask)
    assert_close_naming_bugs(
        first,
        expected,
        what=_("logits after train() then eval() vs the reference without dropout"),
        case=case,
        hint=_("eval() must switch every dropout off"),
        **tolerance(torch.float64, stack=True),
    )
    check(
        bool((trained - first).abs().max() > 1e-3),
        _("dropout does nothing in training mode: the logits are the evaluation-mode ones"),
        _("pass dropout to the positional encoding and the stacks"),
        case=case,
    )


def test_encoder_with_one_layer_is_that_layer_without_final_norm(impl):
    # With one layer, Encoder/Decoder are exactly that layer (no extra final norm).
    d_model, heads, d_ff = 8, 2, 12
    enc = impl.model.Encoder(1, d_model, heads, d_ff, 0.0)
    enc.double()
    state = oracle.encoder_state(1, d_model, d_ff, 5801)
    enc.load_state_dict(state, strict=True)
    enc.eval()
    x = tensor((2, 5, d_model), 5802)
    mask = key_padding_mask(2, 5, 5803)
    expected = layer_oracle.encoder_layer(layer_oracle.strip_prefix(state, "layers.0."), x, mask, heads)
    assert_close_naming_bugs(
        enc(x, mask),
        torch.from_numpy(expected),
        what=_("Encoder output vs its one layer alone"),
        case=_(
            "Encoder(num_layers=1, d_model={d_model}, num_heads={heads}, d_ff={d_ff}), x {x}, padding mask, {dtype}",
            d_model=d_model,
            heads=heads,
            d_ff=d_ff,
            x=tuple(x.shape),
            dtype=torch.float64,
        ),
        hint=_("no final LayerNorm after the stack: every post-norm layer already ends in one"),
        **tolerance(torch.float64),
    )
