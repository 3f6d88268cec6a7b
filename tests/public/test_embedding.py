"""Part `embedding`: TokenEmbedding (paper §3.4) and PositionalEncoding (paper §3.5).

TokenEmbedding(tokens) = embedding.weight[tokens] * sqrt(d_model).
PositionalEncoding(x) = dropout(x + pe[:T]) with pe[p, 2i] = sin(p / 10000^(2i/d_model)),
pe[p, 2i+1] = cos(p / 10000^(2i/d_model)).
"""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.builders import pe_buffer
from tests.support.checks import assert_close, check, raised_by, tolerance
from tests.support.oracles import embedding as oracle
from tests.support.strategies import batch_sizes, dtypes, int_tensor, lengths, seeds, tensor

# The pe buffer is float32 by default; a table computed in float32 is off by a few 1e-6 for
# positions of a few dozen, so table comparisons use this tolerance whatever the dtype.
PE_TOL = {"rtol": 1e-6, "atol": 2e-5}


def embedding_bugs(weight, tokens, vocab, d_model, dtype):
    def scaled(factor):
        return torch.from_numpy(oracle.token_embedding(weight, tokens, factor)).to(dtype)

    return {
        _("the embeddings are not scaled: multiply the lookup by sqrt(d_model)"): scaled(1.0),
        _("scaled by d_model instead of sqrt(d_model)"): scaled(float(d_model)),
        _("scaled by sqrt(vocab_size) instead of sqrt(d_model)"): scaled(math.sqrt(vocab)),
        _("divided by sqrt(d_model) instead of multiplied"): scaled(1.0 / math.sqrt(d_model)),
        # only consulted when the tight float64 check fails: right to float32 precision only
        _(
            "sqrt(d_model) is a float32 number (torch.sqrt(torch.tensor(d_model))?): use math.sqrt(d_model) so "
            "that float64 modules stay exact"
        ): scaled(float(torch.tensor(math.sqrt(d_model), dtype=torch.float32))),
    }


# ---------------------------------------------------------------- TokenEmbedding


@given(vocab=st.integers(2, 12), d_model=st.integers(1, 9), batch=batch_sizes, length=lengths, seed=seeds, dtype=dtypes)
def test_token_embedding_is_lookup_times_sqrt_d_model(impl, vocab, d_model, batch, length, seed, dtype):
    module = impl.embedding.TokenEmbedding(vocab, d_model)
    if dtype == torch.float64:
        module.double()
    weight = tensor((vocab, d_model), seed, dtype)
    module.load_state_dict({"embedding.weight": weight}, strict=True)
    tokens = int_tensor((batch, length), seed + 1, 0, vocab)
    expected = torch.from_numpy(oracle.token_embedding(weight, tokens)).to(dtype)
    assert_close(
        module(tokens),
        expected,
        what=_("token embeddings"),
        case=_(
            "TokenEmbedding({vocab}, {d_model}) on tokens of shape {shape}, {dtype}",
            vocab=vocab,
            d_model=d_model,
            shape=tuple(tokens.shape),
            dtype=dtype,
        ),
        hint=_("embedding(tokens) * math.sqrt(d_model), shape (B, T, d_model), in the module's dtype"),
        likely_bugs=embedding_bugs(weight, tokens, vocab, d_model, dtype),
        **tolerance(dtype),
    )


@given(seed=seeds, pad=st.sampled_from([0, 2]))
def test_token_embedding_padding_row_gets_no_gradient(impl, seed, pad):
    vocab, d_model = 6, 4
    module = impl.embedding.TokenEmbedding(vocab, d_model, padding_idx=pad)
    module.double()
    module.load_state_dict({"embedding.weight": tensor((vocab, d_model), seed)}, strict=True)
    tokens = int_tensor((2, 7), seed + 1, 0, vocab)
    tokens[:, 0] = pad  # the padding token occurs for sure
    upstream = tensor((2, 7, d_model), seed + 2)
    _arg_grads, param_grads = impl.gradients(module, [tokens], upstream)
    case = _(
        "TokenEmbedding({vocab}, {d_model}, padding_idx={pad}) on tokens of shape {shape}",
        vocab=vocab,
        d_model=d_model,
        pad=pad,
        shape=tuple(tokens.shape),
    )
    check(
        "embedding.weight" in param_grads,
        _("TokenEmbedding has no parameter embedding.weight (its parameters: {names})", names=sorted(param_grads)),
        _("the nn.Embedding must be called embedding"),
        case=case,
    )
    expected = oracle.token_embedding_grad(vocab, tokens, upstream, math.sqrt(d_model), padding_idx=pad)
    assert_close(
        param_grads["embedding.weight"],
        torch.from_numpy(expected),
        what=_("gradient with respect to embedding.weight"),
        case=case,
        hint=_(
            "pass padding_idx to nn.Embedding: the padding row must get no gradient; "
            "every other row gets sqrt(d_model) times the upstream gradient of its occurrences"
        ),
        likely_bugs={
            _("padding_idx is not passed to nn.Embedding: the padding row is trained"): torch.from_numpy(
                oracle.token_embedding_grad(vocab, tokens, upstream, math.sqrt(d_model))
            ),
        },
        **tolerance(torch.float64),
    )


# ---------------------------------------------------------------- PositionalEncoding


@given(d_model=st.integers(1, 16), max_len=st.integers(1, 48))
def test_positional_table_matches_paper_formula(impl, d_model, max_len):
    module = impl.embedding.PositionalEncoding(d_model, max_len=max_len, dropout=0.0)
    pe = pe_buffer(module)
    expected = torch.from_numpy(oracle.sinusoid_table(max_len, d_model))
    assert_close(
        pe,
        expected,
        what=_("positional encoding table pe"),
        case=_("PositionalEncoding(d_model={d_model}, max_len={max_len})", d_model=d_model, max_len=max_len),
        hint=_(
            "pe[p, 2i] = sin(p / 10000^(2i/d_model)), pe[p, 2i+1] = cos(p / 10000^(2i/d_model)); "
            "shape (max_len, d_model); for an odd d_model the last feature is a lone sine"
        ),
        likely_bugs=oracle.pe_bug_tables(max_len, d_model),
        check_dtype=False,
        **PE_TOL,
    )


@given(d_model=st.integers(1, 16))
def test_positional_table_starts_at_zero_one_and_is_bounded(impl, d_model):
    pe = pe_buffer(impl.embedding.PositionalEncoding(d_model, max_len=64, dropout=0.0))
    expected_first = torch.tensor([float(j % 2) for j in range(d_model)])
    assert_close(
        pe[0],
        expected_first.to(pe.dtype),
        what=_("pe[0] (position 0)"),
        case=_("PositionalEncoding(d_model={d_model}, max_len={max_len})", d_model=d_model, max_len=64),
        hint=_("sin(0) = 0 on the even features, cos(0) = 1 on the odd ones: [0, 1, 0, 1, ...]"),
        likely_bugs={_("sin and cos are swapped"): 1 - expected_first},
        rtol=0.0,
        atol=1e-7,
        check_dtype=False,
    )
    check(
        bool((pe.abs() <= 1 + 1e-6).all()),
        _("pe has entries larger than 1 in absolute value (largest {largest})", largest=f"{pe.abs().max().item():.4g}"),
        _("every entry is a sine or a cosine"),
        case=_("PositionalEncoding(d_model={d_model}, max_len={max_len})", d_model=d_model, max_len=64),
    )


@given(d_model=st.integers(2, 16), k=st.integers(1, 8))
def test_positional_table_shift_is_a_rotation_of_each_pair(impl, d_model, k):
    max_len = 40
    pe = pe_buffer(impl.embedding.PositionalEncoding(d_model, max_len=max_len, dropout=0.0)).double()
    pairs = d_model // 2
    # Read the rotation angle of each pair off the table itself: pe[0] = (0, 1) per pair.
    sin_k, cos_k = pe[k, 0 : 2 * pairs : 2].numpy(), pe[k, 1 : 2 * pairs : 2].numpy()
    rotated = oracle.rotate_pairs(pe[: max_len - k], sin_k, cos_k)
    assert_close(
        pe[k:, : 2 * pairs],
        torch.from_numpy(rotated),
        what=_("pe[p + {k}] vs pe[p] rotated in every (sin, cos) pair", k=k),
        case=_("PositionalEncoding(d_model={d_model}, max_len={max_len})", d_model=d_model, max_len=max_len),
        hint=_(
            "each pair (2i, 2i+1) must be (sin, cos) of the SAME angle p * w_i, so that a shift by k "
            "is the rotation by k * w_i: both features of a pair share the exponent 2i/d_model"
        ),
        rtol=1e-5,
        atol=5e-5,
        check_dtype=False,
    )


@given(batch=batch_sizes, length=lengths, d_model=st.integers(1, 12), seed=seeds, dtype=dtypes)
def test_positional_forward_adds_table_in_eval_mode(impl, batch, length, d_model, seed, dtype):
    module = impl.embedding.PositionalEncoding(d_model, max_len=16, dropout=0.5)
    module.eval()
    x = tensor((batch, length, d_model), seed, dtype)
    table = oracle.sinusoid_table(16, d_model)[:length]
    expected = (x.double() + torch.from_numpy(table)).to(dtype)
    bugs = {
        text: (x.double() + torch.from_numpy(oracle.sinusoid_table(16, d_model, name)[:length])).to(dtype)
        for name, text in oracle.PE_BUGS.items()
    }
    bugs[_("the positional encoding is not added: forward returns x unchanged")] = x
    assert_close(
        module(x),
        expected,
        what=_("output of PositionalEncoding in eval mode"),
        case=_(
            "PositionalEncoding(d_model={d_model}, max_len=16, dropout=0.5).eval() on x of shape {shape}, {dtype}",
            d_model=d_model,
            shape=tuple(x.shape),
            dtype=dtype,
        ),
        hint=_("return dropout(x + pe[:T]) in x's dtype (pe[:T].to(x.dtype)); T is x.size(1)"),
        likely_bugs=bugs,
        rtol=max(PE_TOL["rtol"], tolerance(dtype)["rtol"]),
        atol=PE_TOL["atol"],
    )


def test_positional_forward_raises_when_sequence_longer_than_max_len(impl):
    module = impl.embedding.PositionalEncoding(6, max_len=5, dropout=0.0)
    out = module(torch.zeros(2, 5, 6))  # T == max_len is fine
    check(
        tuple(out.shape) == (2, 5, 6),
        _("the output has shape {shape}, expected (2, 5, 6)", shape=tuple(out.shape)),
        _("T == max_len is allowed; the output has the shape of x"),
        case=_("PositionalEncoding(6, max_len=5) on zeros of shape (2, 5, 6)"),
    )
    error = raised_by(lambda: module(torch.zeros(2, 6, 6)))
    check(
        isinstance(error, ValueError),
        _(
            "a sequence longer than max_len must raise ValueError, but {outcome}",
            outcome=_("nothing was raised")
            if error is None
            else _("{error} was raised instead", error=type(error).__name__),
        ),
        _("check T = x.size(1) against max_len (self.pe.size(0)) and raise ValueError before adding pe"),
        case=_("PositionalEncoding(6, max_len=5) on zeros of shape (2, 6, 6)"),
    )


def test_positional_dropout_only_in_training_mode(impl):
    p = 0.5
    module = impl.embedding.PositionalEncoding(16, max_len=64, dropout=p)
    x = tensor((4, 32, 16), 7, torch.float32)
    clean = x.double() + torch.from_numpy(oracle.sinusoid_table(64, 16)[:32])
    module.train()
    y = module(x).double()
    dropped = y == 0
    fraction = dropped.double().mean().item()
    case = _(
        "PositionalEncoding(16, max_len=64, dropout={p}) on x of shape {shape}, float32", p=p, shape=tuple(x.shape)
    )
    check(
        0.4 < fraction < 0.6,
        _(
            "in training mode, {fraction} of the outputs are zero, expected about {p}",
            fraction=f"{fraction:.1%}",
            p=f"{p:.0%}",
        ),
        _("apply self.dropout (an nn.Dropout) to x + pe[:T]; it is active in training mode"),
        case=case,
    )
    kept = ~dropped
    assert_close(
        y[kept],
        (clean / (1 - p))[kept],
        what=_("entries kept by the dropout in training mode"),
        case=case,
        hint=_("the kept entries are (x + pe) / (1 - p), as nn.Dropout scales them"),
        rtol=1e-5,
        atol=5e-5,
        check_dtype=False,
    )
    module.eval()
    assert_close(
        module(x).double(),
        clean,
        what=_("output of PositionalEncoding after .eval()"),
        case=case,
        hint=_("nn.Dropout does nothing in evaluation mode; do not apply dropout by hand"),
        rtol=1e-6,
        atol=PE_TOL["atol"],
    )


def test_pe_is_a_buffer_not_a_parameter(impl):
    module = impl.embedding.PositionalEncoding(8, max_len=10, dropout=0.1)
    parameters = [name for name, _ in module.named_parameters()]
    case = _("PositionalEncoding(d_model={d_model}, max_len={max_len}, dropout={p})", d_model=8, max_len=10, p=0.1)
    check(
        parameters == [],
        _("PositionalEncoding has trainable parameters {names}", names=parameters),
        _("the table is fixed: register it with register_buffer, not nn.Parameter"),
        case=case,
    )
    state = module.state_dict()
    check(
        list(state) == ["pe"],
        _("the state_dict keys are {keys}, expected ['pe']", keys=list(state)),
        _("self.register_buffer('pe', table) (persistent, so that it is saved with the model)"),
        case=case,
    )
    check(
        tuple(state["pe"].shape) == (10, 8),
        _("pe has shape {shape}, expected (max_len, d_model) = (10, 8)", shape=tuple(state["pe"].shape)),
        _("one row per position, no batch axis"),
        case=case,
    )
    module.double()
    check(
        pe_buffer(module).dtype == torch.float64,
        _("pe is not float64 after module.double()"),
        _("a buffer follows .double()/.to(): register it with register_buffer"),
        case=case,
    )
