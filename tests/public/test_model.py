"""Part `model`: Encoder, Decoder and the full Transformer (paper §3.1, Figure 1; §3.4, §3.5).

    memory = encoder(positional(src_embed(src)), src_mask)
    hidden = decoder(positional(tgt_embed(tgt)), memory, src_mask, tgt_mask)
    logits = generator(hidden)

Reference: the same model assembled from PyTorch built-ins (nn.Embedding * sqrt(d_model), the
sinusoid table, nn.TransformerEncoder / nn.TransformerDecoder without a final norm, nn.Linear)
with the same weights, in float64. Weight initialisation is not tested.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.builders import batch_inputs, load_weights, make_model
from tests.support.checks import assert_close, check, tolerance
from tests.support.likely_bugs import assert_close_naming_bugs
from tests.support.oracles import model as oracle
from tests.support.strategies import (
    batch_sizes,
    causal,
    dtypes,
    fewer_examples,
    int_tensor,
    key_padding_mask,
    model_dims,
    seeds,
    tensor,
)

FORWARD_HINT = _(
    "logits = generator(decoder(positional(tgt_embed(tgt)), memory, src_mask, tgt_mask)) with "
    "memory = encoder(positional(src_embed(src)), src_mask); no softmax at the end"
)
EVERY_SUBMODULE_HINT = _("every submodule must take part in forward")


def model_case(layers, d_model, heads, src, tgt, dtype):
    return _(
        "Transformer(num_layers={layers}, d_model={d_model}, num_heads={heads}), src {src}, tgt {tgt}, "
        "padded batch, {dtype}",
        layers=layers,
        d_model=d_model,
        heads=heads,
        src=tuple(src.shape),
        tgt=tuple(tgt.shape),
        dtype=dtype,
    )


@given(
    layers=st.integers(1, 2),
    dims=model_dims(),
    batch=batch_sizes,
    t_src=st.integers(1, 6),
    t_tgt=st.integers(1, 6),
    seed=seeds,
    dtype=dtypes,
)
def test_transformer_forward_matches_builtin_model(impl, layers, dims, batch, t_src, t_tgt, seed, dtype):
    d_model, heads = dims
    cfg = oracle.Config(d_model=d_model, num_heads=heads, num_layers=layers, d_ff=2 * d_model + 2)
    model, state = make_model(impl, cfg, seed, dtype)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, seed + 1, batch, t_src, t_tgt)
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
        case=model_case(layers, d_model, heads, src, tgt, dtype),
        hint=FORWARD_HINT,
        **tolerance(dtype, stack=True),
    )


@fewer_examples()
@given(seed=seeds, dtype=dtypes, t_src=st.integers(1, 6), t_tgt=st.integers(1, 6))
def test_encode_and_decode_match_builtin_model(impl, seed, dtype, t_src, t_tgt):
    cfg = oracle.Config()
    model, state = make_model(impl, cfg, seed, dtype)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, seed + 1, 2, t_src, t_tgt)
    reference = oracle.BuiltinTransformer(state, cfg)
    with torch.no_grad():
        memory = reference.encode(src, src_mask)
        hidden = reference.decode(tgt, memory, src_mask, tgt_mask)

    @torch.no_grad()
    def encode_bugs():
        return {
            oracle.MODEL_BUGS[name]: reference.encode(src, src_mask, name).to(dtype)
            for name in ("no_positional_src", "no_embedding_scale", "encoder_last_only", "encoder_first_only")
        }

    @torch.no_grad()
    def decode_bugs():
        return {
            oracle.MODEL_BUGS[name]: reference.decode(tgt, memory, src_mask, tgt_mask, name).to(dtype)
            for name in (
                "no_positional_tgt",
                "no_embedding_scale",
                "decoder_last_only",
                "decoder_first_only",
                "src_embed_for_tgt",
            )
        }

    case = model_case(cfg.num_layers, cfg.d_model, cfg.num_heads, src, tgt, dtype)
    assert_close_naming_bugs(
        model.encode(src, src_mask),
        memory.to(dtype),
        encode_bugs,
        what=_("output of encode (the memory) vs the built-in encoder"),
        case=case,
        hint="encoder(positional(src_embed(src)), src_mask)",
        **tolerance(dtype, stack=True),
    )
    assert_close_naming_bugs(
        model.decode(tgt, memory.to(dtype), src_mask, tgt_mask),
        hidden.to(dtype),
        decode_bugs,
        what=_("output of decode vs the built-in decoder"),
        case=case,
        hint=_("decoder(positional(tgt_embed(tgt)), memory, src_mask, tgt_mask), no generator"),
        **tolerance(dtype, stack=True),
    )


@fewer_examples()
@given(layers=st.integers(1, 4), seed=seeds, dtype=dtypes, length=st.integers(1, 6))
def test_encoder_stack_applies_layers_in_sequence(impl, layers, seed, dtype, length):
    d_model, heads, d_ff = 8, 2, 12
    encoder = impl.model.Encoder(layers, d_model, heads, d_ff, 0.0)
    case = _(
        "Encoder(num_layers={layers}, d_model={d_model}, num_heads={heads}, d_ff={d_ff})",
        layers=layers,
        d_model=d_model,
        heads=heads,
        d_ff=d_ff,
    )
    check(
        len(encoder.layers) == layers,
        _("Encoder(num_layers={layers}).layers has {count} layers", layers=layers, count=len(encoder.layers)),
        _("an nn.ModuleList of num_layers EncoderLayers"),
        case=case,
    )
    state = oracle.encoder_state(layers, d_model, d_ff, seed)
    load_weights(encoder, state, dtype)
    x = tensor((2, length, d_model), seed + 1, dtype)
    mask = key_padding_mask(2, length, seed + 2)
    stack = oracle.builtin_encoder(state, layers, d_model, heads, d_ff)
    with torch.no_grad():
        expected = oracle.run_builtin_encoder(stack, x.double(), mask)
        bugs = {
            oracle.STACK_BUGS[name]: oracle.run_builtin_encoder(stack, x.double(), mask, only_layer=i).to(dtype)
            for name, i in (("last_only", layers - 1), ("first_only", 0))
            if layers > 1
        }  # one layer alone is the right answer
    assert_close_naming_bugs(
        encoder(x, mask),
        expected.to(dtype),
        what=_("Encoder output vs nn.TransformerEncoder"),
        case=_("{encoder}, x {x}, padding mask, {dtype}", encoder=case, x=tuple(x.shape), dtype=dtype),
        hint=_("for layer in self.layers: x = layer(x, src_mask); no final norm"),
        likely_bugs=bugs,
        **tolerance(dtype, stack=True),
    )


@fewer_examples()
@given(layers=st.integers(1, 4), seed=seeds, dtype=dtypes, t_tgt=st.integers(1, 6))
def test_decoder_stack_applies_layers_in_sequence(impl, layers, seed, dtype, t_tgt):
    d_model, heads, d_ff = 8, 2, 12
    decoder = impl.model.Decoder(layers, d_model, heads, d_ff, 0.0)
    case = _(
        "Decoder(num_layers={layers}, d_model={d_model}, num_heads={heads}, d_ff={d_ff})",
        layers=layers,
        d_model=d_model,
        heads=heads,
        d_ff=d_ff,
    )
    check(
        len(decoder.layers) == layers,
        _("Decoder(num_layers={layers}).layers has {count} layers", layers=layers, count=len(decoder.layers)),
        _("an nn.ModuleList of num_layers DecoderLayers"),
        case=case,
    )
    state = oracle.decoder_state(layers, d_model, d_ff, seed)
    load_weights(decoder, state, dtype)
    x = tensor((2, t_tgt, d_model), seed + 1, dtype)
    memory = tensor((2, 5, d_model), seed + 2, dtype)
    src_mask = key_padding_mask(2, 5, seed + 3)
    tgt_mask = causal(t_tgt)
    stack = oracle.builtin_decoder(state, layers, d_model, heads, d_ff)
    with torch.no_grad():
        args = (x.double(), memory.double(), src_mask, tgt_mask, heads)
        expected = oracle.run_builtin_decoder(stack, *args)
        bugs = {
            oracle.STACK_BUGS[name]: oracle.run_builtin_decoder(stack, *args, only_layer=i).to(dtype)
            for name, i in (("last_only", layers - 1), ("first_only", 0))
            if layers > 1
        }  # one layer alone is the right answer
    assert_close_naming_bugs(
        decoder(x, memory, src_mask, tgt_mask),
        expected.to(dtype),
        what=_("Decoder output vs nn.TransformerDecoder"),
        case=_(
            "{decoder}, x {x}, memory {memory}, causal tgt_mask, {dtype}",
            decoder=case,
            x=tuple(x.shape),
            memory=tuple(memory.shape),
            dtype=dtype,
        ),
        hint=_("for layer in self.layers: x = layer(x, memory, src_mask, tgt_mask) — the same memory for every layer"),
        likely_bugs=bugs,
        **tolerance(dtype, stack=True),
    )


@fewer_examples()
@given(seed=seeds, extra=st.integers(1, 4), t_src=st.integers(1, 5))
def test_transformer_ignores_appended_source_padding(impl, seed, extra, t_src):
    cfg = oracle.Config()
    model, _state = make_model(impl, cfg, seed)
    src = int_tensor((2, t_src), seed + 1, 1, cfg.src_vocab)
    tgt = int_tensor((2, 4), seed + 2, 1, cfg.tgt_vocab)
    src_mask = torch.ones(2, 1, t_src, dtype=torch.bool)
    padded = torch.cat([src, torch.full((2, extra), cfg.pad_id)], dim=1)
    padded_mask = torch.cat([src_mask, torch.zeros(2, 1, extra, dtype=torch.bool)], dim=2)
    assert_close(
        model(padded, tgt, padded_mask, causal(4)),
        model(src, tgt, src_mask, causal(4)),
        what=_("logits with vs without padding appended to the source"),
        case=_(
            "src {src} plus {extra} padding tokens masked out in src_mask, tgt (2, 4), {dtype}",
            src=tuple(src.shape),
            extra=extra,
            dtype=torch.float64,
        ),
        hint=_("src_mask must reach every encoder self-attention and every decoder cross-attention"),
        **tolerance(torch.float64),
    )


@fewer_examples()
@given(seed=seeds, t_tgt=st.integers(2, 7), j=st.integers(1, 6))
def test_transformer_is_causal_on_the_target_side(impl, seed, t_tgt, j):
    j = min(j, t_tgt - 1)
    cfg = oracle.Config()
    model, _state = make_model(impl, cfg, seed)
    src, _tgt, src_mask, _tgt_mask = batch_inputs(cfg, seed + 1, 2, 5, t_tgt)
    tgt = int_tensor((2, t_tgt), seed + 2, 1, cfg.tgt_vocab)
    changed = tgt.clone()
    changed[:, j:] = tgt[:, j:] % (cfg.tgt_vocab - 1) + 1  # another real token (ids 1..V-1 cycled)
    before = model(src, tgt, src_mask, causal(t_tgt))
    after = model(src, changed, src_mask, causal(t_tgt))
    assert_close(
        after[:, :j],
        before[:, :j],
        what=_("logits before the changed target positions"),
        case=_(
            "tgt {tgt}, the target tokens changed from position {j} on, causal tgt_mask, {dtype}",
            tgt=tuple(tgt.shape),
            j=j,
            dtype=torch.float64,
        ),
        hint=_("every decoder layer's self-attention must use tgt_mask"),
        **tolerance(torch.float64),
    )
    check(
        bool((after[:, j] - before[:, j]).abs().max() > 1e-6),
        _("changing target token {j} does not change the logits at position {j}", j=j),
        _("the decoder input must be embedded (tgt_embed) and fed to the decoder"),
        case=_("tgt {tgt}, causal tgt_mask, {dtype}", tgt=tuple(tgt.shape), dtype=torch.float64),
    )


@fewer_examples()
@given(seed=seeds, batch=st.integers(2, 3))
def test_transformer_treats_batch_rows_independently(impl, seed, batch):
    cfg = oracle.Config()
    model, _state = make_model(impl, cfg, seed)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, seed + 1, batch, 5, 4)
    whole = model(src, tgt, src_mask, tgt_mask)
    for b in range(batch):
        row = slice(b, b + 1)
        assert_close(
            model(src[row], tgt[row], src_mask[row], tgt_mask[row]),
            whole[row],
            what=_("logits of one batch row alone vs in the whole batch"),
            case=_(
                "batch row {b} of {batch}, src {src}, tgt {tgt}, {dtype}",
                b=b,
                batch=batch,
                src=tuple(src.shape),
                tgt=tuple(tgt.shape),
                dtype=torch.float64,
            ),
            hint=_("never mix batch rows"),
            **tolerance(torch.float64),
        )


def test_every_parameter_gets_a_finite_gradient(impl):
    cfg = oracle.Config(pad_id=1)
    model, state = make_model(impl, cfg, 5)
    src, tgt, src_mask, _tgt_mask = batch_inputs(cfg, 6, 3, 6, 5)
    src[2, -2:], tgt[2, -2:] = cfg.pad_id, cfg.pad_id  # padding occurs on both sides for sure
    src_mask = (src != cfg.pad_id).unsqueeze(1)
    tgt_mask = (tgt != cfg.pad_id).unsqueeze(1) & causal(5)
    upstream = tensor((3, 5, cfg.tgt_vocab), 7)
    _input_grads, grads = impl.gradients(model, [src, tgt, src_mask, tgt_mask], upstream)
    expected = sorted(k for k in state if k != "positional.pe")
    case = _(
        "Transformer(num_layers={layers}, d_model={d_model}, num_heads={heads}, pad_id={pad_id}), src {src}, "
        "tgt {tgt}, both padded, {dtype}",
        layers=cfg.num_layers,
        d_model=cfg.d_model,
        heads=cfg.num_heads,
        pad_id=cfg.pad_id,
        src=tuple(src.shape),
        tgt=tuple(tgt.shape),
        dtype=torch.float64,
    )
    check(
        sorted(grads) == expected,
        _(
            "the parameters differ from the contract: missing {missing}, unexpected {unexpected}",
            missing=sorted(set(expected) - set(grads)),
            unexpected=sorted(set(grads) - set(expected)),
        ),
        _("positional.pe must be a buffer; everything else is a parameter"),
        case=case,
    )
    for name in expected:
        grad = grads[name]
        check(
            grad is not None,
            _("parameter {name} gets no gradient from the logits", name=name),
            EVERY_SUBMODULE_HINT,
            case=case,
        )
        check(
            bool(torch.isfinite(grad).all()),
            _("the gradient of {name} has NaN or inf entries", name=name),
            _("masked scores: use a large negative number or -inf before the softmax, never after"),
            case=case,
        )
        if not name.endswith("w_k.bias"):  # softmax ignores a shift shared by a whole row: that gradient is 0
            check(
                bool(grad.abs().max() > 0),
                _("parameter {name} gets an all-zero gradient", name=name),
                EVERY_SUBMODULE_HINT,
                case=case,
            )
    for side, tokens in (("src_embed", src), ("tgt_embed", tgt)):
        grad = grads[f"{side}.embedding.weight"]
        check(
            bool((grad[cfg.pad_id] == 0).all()),
            _("the padding row {pad_id} of {side} gets a gradient", pad_id=cfg.pad_id, side=side),
            _("TokenEmbedding(vocab, d_model, padding_idx=pad_id) with the model's pad_id"),
            case=case,
        )
        used = [t for t in tokens.unique().tolist() if t != cfg.pad_id]
        check(
            all(bool(grad[t].abs().max() > 0) for t in used),
            _("some tokens present in the input get no gradient in {side}", side=side),
            _("embed every token"),
            case=case,
        )


def test_transformer_submodules_and_pad_id(impl):
    cfg = oracle.Config(pad_id=3, num_layers=3)
    model = impl.model.Transformer(**cfg.kwargs(0.1))
    case = _(
        "Transformer(src_vocab_size={src_vocab}, tgt_vocab_size={tgt_vocab}, d_model={d_model}, "
        "num_heads={heads}, num_layers=3, d_ff={d_ff}, pad_id=3)",
        src_vocab=cfg.src_vocab,
        tgt_vocab=cfg.tgt_vocab,
        d_model=cfg.d_model,
        heads=cfg.num_heads,
        d_ff=cfg.d_ff,
    )
    check(
        model.pad_id == 3,
        _("Transformer(pad_id=3).pad_id is {value}", value=repr(model.pad_id)),
        _("keep self.pad_id = pad_id"),
        case=case,
    )
    actual = set(model.state_dict())
    expected = set(oracle.transformer_state(cfg, 0))
    check(
        actual == expected,
        _(
            "the state-dict keys differ from the contract: missing {missing}, unexpected {unexpected}",
            missing=sorted(expected - actual)[:8],
            unexpected=sorted(actual - expected)[:8],
        ),
        _("submodules src_embed, tgt_embed, positional (one, shared), encoder, decoder, generator"),
        case=case,
    )
    check(
        len(model.encoder.layers) == 3 and len(model.decoder.layers) == 3,
        _(
            "Transformer(num_layers=3) has {encoder} encoder and {decoder} decoder layers",
            encoder=len(model.encoder.layers),
            decoder=len(model.decoder.layers),
        ),
        _("Encoder(num_layers, ...) and Decoder(num_layers, ...)"),
        case=case,
    )


def test_transformer_dropout_only_in_training_mode(impl):
    cfg = oracle.Config()
    model, state = make_model(impl, cfg, 9, torch.float32, dropout=0.5)
    src, tgt, src_mask, tgt_mask = batch_inputs(cfg, 10, 2, 6, 5)
    with torch.no_grad():
        expected = oracle.BuiltinTransformer(state, cfg).forward(src, tgt, src_mask, tgt_mask).float()
    model.eval()
    case = _(
        "Transformer(dropout=0.5), src {src}, tgt {tgt}, {dtype}",
        src=tuple(src.shape),
        tgt=tuple(tgt.shape),
        dtype=torch.float32,
    )
    assert_close(
        model(src, tgt, src_mask, tgt_mask),
        expected,
        what=_("logits in evaluation mode vs the reference without dropout"),
        case=case,
        hint=_("every dropout must be an nn.Dropout: none may act after .eval()"),
        **tolerance(torch.float32, stack=True),
    )
    model.train()
    first, second = model(src, tgt, src_mask, tgt_mask), model(src, tgt, src_mask, tgt_mask)
    check(
        bool((first - expected).abs().max() > 1e-3) and bool((first - second).abs().max() > 1e-3),
        _("dropout does nothing in training mode: the logits are the evaluation-mode ones (or the same twice)"),
        _("pass dropout on to the positional encoding, the encoder and the decoder"),
        case=case,
    )
