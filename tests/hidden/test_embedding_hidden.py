"""Part `embedding` (hidden): TokenEmbedding (paper §3.4) and PositionalEncoding (paper §3.5).

More sizes, the paper's d_model = 512 with the default max_len = 5000, odd widths, fresh
weights and seeds, and the edge cases of the contract.
"""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.builders import pe_buffer
from tests.support.checks import assert_close, check, raised_by, tolerance
from tests.support.oracles import embedding as oracle
from tests.support.strategies import dtypes, int_tensor, seeds, tensor

# ---------------------------------------------------------------- TokenEmbedding


@given(
    vocab=st.integers(2, 40),
    d_model=st.integers(1, 33),
    batch=st.integers(1, 4),
    length=st.integers(1, 12),
    seed=seeds,
    dtype=dtypes,
    pad=st.sampled_from([None, 0, 1]),
)
def test_token_embedding_lookup_more_sizes(impl, vocab, d_model, batch, length, seed, dtype, pad):
    module = impl.embedding.TokenEmbedding(vocab, d_model, padding_idx=pad)
    if dtype == torch.float64:
        module.double()
    weight = tensor((vocab, d_model), seed + 100, dtype, scale=3.0)  # the padding row too: loaded weights rule
    module.load_state_dict({"embedding.weight": weight}, strict=True)
    tokens = int_tensor((batch, length), seed + 101, 0, vocab)
    expected = torch.from_numpy(oracle.token_embedding(weight, tokens)).to(dtype)
    assert_close(
        module(tokens),
        expected,
        what=_("token embeddings"),
        case=_(
            "TokenEmbedding({vocab}, {d_model}, padding_idx={pad}) on tokens of shape {shape}, {dtype}",
            vocab=vocab,
            d_model=d_model,
            pad=pad,
            shape=tuple(tokens.shape),
            dtype=dtype,
        ),
        hint=_("embedding(tokens) * math.sqrt(d_model); the output follows the module's dtype"),
        likely_bugs={
            _("the embeddings are not scaled by sqrt(d_model)"): torch.from_numpy(
                oracle.token_embedding(weight, tokens, 1.0)
            ).to(dtype),
            _("scaled by d_model instead of sqrt(d_model)"): torch.from_numpy(
                oracle.token_embedding(weight, tokens, float(d_model))
            ).to(dtype),
            _("scaled by sqrt(vocab_size) instead of sqrt(d_model)"): torch.from_numpy(
                oracle.token_embedding(weight, tokens, math.sqrt(vocab))
            ).to(dtype),
            _(
                "sqrt(d_model) is a float32 number (torch.sqrt(torch.tensor(d_model))?): use math.sqrt(d_model)"
            ): torch.from_numpy(
                oracle.token_embedding(weight, tokens, float(torch.tensor(math.sqrt(d_model), dtype=torch.float32)))
            ).to(dtype),
        },
        **tolerance(dtype),
    )


def test_token_embedding_without_padding_idx_trains_every_row(impl):
    vocab, d_model = 5, 3
    module = impl.embedding.TokenEmbedding(vocab, d_model)
    module.double()
    module.load_state_dict({"embedding.weight": tensor((vocab, d_model), 200)}, strict=True)
    tokens = torch.tensor([[0, 1, 2, 3, 4, 0]])
    upstream = tensor((1, 6, d_model), 201)
    _arg_grads, grads = impl.gradients(module, [tokens], upstream)
    expected = oracle.token_embedding_grad(vocab, tokens, upstream, math.sqrt(d_model))
    assert_close(
        grads["embedding.weight"],
        torch.from_numpy(expected),
        what=_("gradient with respect to embedding.weight"),
        case=_("TokenEmbedding(5, 3) (padding_idx=None) on the tokens [[0, 1, 2, 3, 4, 0]]"),
        hint=_("padding_idx defaults to None: then no row is special (do not hard-code padding_idx=0)"),
        likely_bugs={
            _("padding_idx is hard-coded to 0"): torch.from_numpy(
                oracle.token_embedding_grad(vocab, tokens, upstream, math.sqrt(d_model), 0)
            )
        },
        **tolerance(torch.float64),
    )


@given(vocab=st.integers(2, 15), d_model=st.integers(1, 8), seed=seeds)
def test_token_embedding_any_padding_idx_gets_no_gradient(impl, vocab, d_model, seed):
    pad = vocab - 1
    module = impl.embedding.TokenEmbedding(vocab, d_model, padding_idx=pad)
    module.double()
    module.load_state_dict({"embedding.weight": tensor((vocab, d_model), seed + 400)}, strict=True)
    tokens = int_tensor((3, 5), seed + 401, 0, vocab)
    tokens[-1, -1] = pad
    upstream = tensor((3, 5, d_model), seed + 402)
    _arg_grads, grads = impl.gradients(module, [tokens], upstream)
    expected = oracle.token_embedding_grad(vocab, tokens, upstream, math.sqrt(d_model), padding_idx=pad)
    assert_close(
        grads["embedding.weight"],
        torch.from_numpy(expected),
        what=_("gradient with respect to embedding.weight"),
        case=_(
            "TokenEmbedding({vocab}, {d_model}, padding_idx={pad}) on tokens of shape {shape}",
            vocab=vocab,
            d_model=d_model,
            pad=pad,
            shape=tuple(tokens.shape),
        ),
        hint=_("nn.Embedding(vocab_size, d_model, padding_idx=padding_idx): the padding row gets no gradient"),
        likely_bugs={
            _("padding_idx is not passed to nn.Embedding"): torch.from_numpy(
                oracle.token_embedding_grad(vocab, tokens, upstream, math.sqrt(d_model))
            )
        },
        **tolerance(torch.float64),
    )


def test_token_embedding_weight_shape_and_single_token(impl):
    module = impl.embedding.TokenEmbedding(7, 4)
    state = module.state_dict()
    check(
        list(state) == ["embedding.weight"],
        _("the state_dict keys are {keys}, expected ['embedding.weight']", keys=list(state)),
        _("one nn.Embedding called embedding, nothing else with state"),
        case=_("TokenEmbedding({vocab}, {d_model})", vocab=7, d_model=4),
    )
    check(
        tuple(state["embedding.weight"].shape) == (7, 4),
        _(
            "embedding.weight has shape {shape}, expected (vocab_size, d_model) = (7, 4)",
            shape=tuple(state["embedding.weight"].shape),
        ),
        _("nn.Embedding(vocab_size, d_model)"),
        case=_("TokenEmbedding({vocab}, {d_model})", vocab=7, d_model=4),
    )
    weight = tensor((7, 4), 202, torch.float32)
    module.load_state_dict({"embedding.weight": weight}, strict=True)
    assert_close(
        module(torch.tensor([[6]])),
        (weight[6] * 2.0).reshape(1, 1, 4),
        what=_("token embedding of a single token"),
        case=_("TokenEmbedding(7, 4) on the tokens [[6]]"),
        hint=_("the output is the row weight[6] times sqrt(d_model) = sqrt(4)"),
        **tolerance(torch.float32),
    )


# ---------------------------------------------------------------- PositionalEncoding


def test_positional_table_paper_size_default_max_len(impl):
    module = impl.embedding.PositionalEncoding(512)
    pe = pe_buffer(module)
    check(
        tuple(pe.shape) == (5000, 512),
        _("pe has shape {shape}, expected (5000, 512)", shape=tuple(pe.shape)),
        _("max_len defaults to 5000"),
        case=_("PositionalEncoding({d_model}) with the default max_len", d_model=512),
    )
    expected = oracle.sinusoid_table(5000, 512)
    assert_close(
        pe[:128],
        torch.from_numpy(expected[:128]),
        what=_("the first 128 rows of pe"),
        case=_("PositionalEncoding({d_model}) with the default max_len", d_model=512),
        hint=_("pe[p, 2i] = sin(p / 10000^(2i/d_model)), pe[p, 2i+1] = cos(p / 10000^(2i/d_model))"),
        likely_bugs={
            text: torch.from_numpy(oracle.sinusoid_table(128, 512, name)) for name, text in oracle.PE_BUGS.items()
        },
        rtol=1e-6,
        atol=5e-5,
        check_dtype=False,
    )
    # Far positions: a float32 angle p * w is off by up to p * 6e-8, so allow for that.
    assert_close(
        pe,
        torch.from_numpy(expected),
        what=_("all 5000 rows of pe"),
        case=_("PositionalEncoding({d_model}) with the default max_len", d_model=512),
        hint=_(
            "compute the angles p / 10000^(2i/d_model) in floating point from integer positions; "
            "the table stays in [-1, 1]"
        ),
        rtol=0.0,
        atol=2e-3,
        check_dtype=False,
    )


@given(d_model=st.sampled_from([1, 3, 5, 7, 9, 15, 31]), max_len=st.integers(1, 80))
def test_positional_table_odd_widths_end_in_a_lone_sine(impl, d_model, max_len):
    pe = pe_buffer(impl.embedding.PositionalEncoding(d_model, max_len=max_len, dropout=0.0))
    expected = oracle.sinusoid_table(max_len, d_model)
    assert_close(
        pe[:, -1],
        torch.from_numpy(expected[:, -1]),
        what=_("the last feature of pe (odd d_model)"),
        case=_("PositionalEncoding(d_model={d_model}, max_len={max_len})", d_model=d_model, max_len=max_len),
        hint=_(
            "feature {j} is even: sin(p / 10000^({j}/{d_model})); it has no cosine partner",
            j=d_model - 1,
            d_model=d_model,
        ),
        likely_bugs={
            _("the last feature is a cosine"): torch.from_numpy(
                np.cos(np.arange(max_len) / 10000 ** ((d_model - 1) / d_model))
            )
        },
        rtol=1e-6,
        atol=5e-5,
        check_dtype=False,
    )
    assert_close(
        pe,
        torch.from_numpy(expected),
        what=_("positional encoding table pe"),
        case=_("PositionalEncoding(d_model={d_model}, max_len={max_len})", d_model=d_model, max_len=max_len),
        hint=_("for an odd d_model, pe[:, 1::2] has one column fewer than pe[:, 0::2]"),
        likely_bugs=oracle.pe_bug_tables(max_len, d_model),
        rtol=1e-6,
        atol=5e-5,
        check_dtype=False,
    )


@given(d_model=st.sampled_from([2, 4, 6, 8, 16, 32, 64]), k=st.integers(1, 30), p0=st.integers(0, 40))
def test_positional_shift_rotation_uses_pair_frequencies(impl, d_model, k, p0):
    pe = pe_buffer(impl.embedding.PositionalEncoding(d_model, max_len=80, dropout=0.0)).double().numpy()
    w = oracle.pair_frequencies(d_model)
    rotated = oracle.rotate_pairs(pe[p0], np.sin(k * w), np.cos(k * w))
    assert_close(
        torch.from_numpy(pe[p0 + k]),
        torch.from_numpy(rotated),
        what=_("pe[{p0} + {k}] vs pe[{p0}] rotated by {k} * w_i in every pair", p0=p0, k=k),
        case=_("PositionalEncoding(d_model={d_model}, max_len={max_len})", d_model=d_model, max_len=80),
        hint=_("pair i turns with the frequency w_i = 1 / 10000^(2i/d_model), shared by its sine and cosine"),
        rtol=1e-5,
        atol=5e-5,
        check_dtype=False,
    )


@given(batch=st.integers(1, 4), length=st.integers(1, 30), d_model=st.integers(1, 20), seed=seeds, dtype=dtypes)
def test_positional_forward_more_sizes_after_double(impl, batch, length, d_model, seed, dtype):
    module = impl.embedding.PositionalEncoding(d_model, max_len=30, dropout=0.3)
    if dtype == torch.float64:
        module.double()
    module.eval()
    x = tensor((batch, length, d_model), seed + 300, dtype, scale=2.0)
    expected = (x.double() + torch.from_numpy(oracle.sinusoid_table(30, d_model)[:length])).to(dtype)
    assert_close(
        module(x),
        expected,
        what=_("output of PositionalEncoding in eval mode"),
        case=_(
            "PositionalEncoding(d_model={d_model}, max_len=30, dropout=0.3).eval() on x of shape {shape}, {dtype}",
            d_model=d_model,
            shape=tuple(x.shape),
            dtype=dtype,
        ),
        hint=_("x + pe[:T] in x's dtype; dropout is off in evaluation mode"),
        likely_bugs={_("the positional encoding is not added"): x},
        rtol=1e-6,
        atol=5e-5,
    )


def test_positional_forward_length_equal_to_max_len_and_length_one(impl):
    module = impl.embedding.PositionalEncoding(4, max_len=3, dropout=0.0)
    x = torch.zeros(1, 3, 4, dtype=torch.float64)
    assert_close(
        module(x),
        torch.from_numpy(oracle.sinusoid_table(3, 4)).unsqueeze(0),
        what=_("output for a sequence of length max_len"),
        case=_("PositionalEncoding(4, max_len=3) on zeros of shape (1, 3, 4)"),
        hint=_("T == max_len is allowed: only T > max_len raises"),
        rtol=1e-6,
        atol=5e-5,
    )
    one = tensor((2, 1, 4), 301)
    assert_close(
        module(one),
        one + torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64),
        what=_("output for sequences of length 1"),
        case=_("PositionalEncoding(4, max_len=3) on x of shape (2, 1, 4)"),
        hint=_("position 0 adds [0, 1, 0, 1]"),
        rtol=1e-6,
        atol=1e-7,
    )


@given(max_len=st.integers(1, 10), extra=st.integers(1, 5))
def test_positional_raises_for_every_too_long_input(impl, max_len, extra):
    module = impl.embedding.PositionalEncoding(3, max_len=max_len, dropout=0.0)
    error = raised_by(lambda: module(torch.zeros(1, max_len + extra, 3)))
    check(
        isinstance(error, ValueError),
        _(
            "a sequence longer than max_len must raise ValueError, but {outcome}",
            outcome=_("nothing was raised")
            if error is None
            else _("{error} was raised instead", error=type(error).__name__),
        ),
        _("check T = x.size(1) against max_len (self.pe.size(0)) and raise ValueError before adding pe"),
        case=_(
            "PositionalEncoding(3, max_len={max_len}) on zeros of shape {shape}",
            max_len=max_len,
            shape=(1, max_len + extra, 3),
        ),
    )


def test_positional_forward_leaves_input_and_table_unchanged(impl):
    module = impl.embedding.PositionalEncoding(6, max_len=8, dropout=0.4)
    before = pe_buffer(module).clone()
    x = tensor((2, 5, 6), 302, torch.float32)
    x_copy = x.clone()
    module.train()
    module(x)
    module.eval()
    module(x)
    case = _(
        "PositionalEncoding(6, max_len=8, dropout=0.4) on x of shape (2, 5, 6), once in training mode and once "
        "in eval mode"
    )
    assert_close(
        x,
        x_copy,
        what=_("the input x after PositionalEncoding.forward (it must be unchanged)"),
        case=case,
        hint=_("do not add in place (x += pe): return a new tensor"),
        rtol=0.0,
        atol=0.0,
    )
    assert_close(
        pe_buffer(module),
        before,
        what=_("the pe buffer after two forward calls (it must be unchanged)"),
        case=case,
        hint=_("the table is fixed: never write into it (no in-place dropout on pe)"),
        rtol=0.0,
        atol=0.0,
    )


@given(p=st.sampled_from([0.1, 0.3, 0.7]))
def test_positional_dropout_rate_is_the_constructor_argument(impl, p):
    module = impl.embedding.PositionalEncoding(32, max_len=64, dropout=p)
    module.train()
    x = tensor((8, 64, 32), 303, torch.float32) + 5.0  # no exact zeros before dropout
    fraction = (module(x) == 0).double().mean().item()
    case = _("PositionalEncoding(32, max_len=64, dropout={p}) on x of shape {shape}", p=p, shape=tuple(x.shape))
    check(
        abs(fraction - p) < 0.05,
        _(
            "in training mode, {fraction} of the outputs are zero, expected about {p}",
            fraction=f"{fraction:.1%}",
            p=f"{p:.0%}",
        ),
        _("keep an nn.Dropout(dropout) module and apply it to x + pe[:T]"),
        case=case,
    )
    module.eval()
    check(
        bool((module(x) != 0).all()),
        _("in eval mode, some outputs are still zeroed"),
        _("dropout must be off in evaluation mode"),
        case=case,
    )


def test_positional_dropout_zero_in_training_mode_is_exact(impl):
    module = impl.embedding.PositionalEncoding(5, max_len=9, dropout=0.0)
    module.train()
    x = tensor((3, 9, 5), 304)
    assert_close(
        module(x),
        x + torch.from_numpy(oracle.sinusoid_table(9, 5)),
        what=_("output in training mode with dropout 0"),
        case=_("PositionalEncoding(5, max_len=9, dropout=0.0) on x of shape (3, 9, 5)"),
        hint=_("dropout 0 keeps every entry unscaled"),
        rtol=1e-6,
        atol=5e-5,
    )
