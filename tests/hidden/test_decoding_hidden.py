"""Part `decoding` (hidden): greedy_decode and beam_search (paper §6.1) on more sizes, other
token ids, the paper's defaults (beam 4, α = 0.6), deeper mask-sensitive toys, and the
student's own Transformer (two layers, so that a missing causal mask shows).

Same conventions as tests/public/test_decoding.py: trusted toys, a naive one-row-at-a-time
greedy loop and brute-force enumeration of every hypothesis as references; trailing all-<pad>
columns are ignored, L <= max_len is checked separately.
"""

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from grader.i18n import _
from grader.runtime.toys import FORBIDDEN_LOGIT, AttentionToy, MarkovToy, PrefixToy, SourceMarkovToy
from tests.public.test_decoding import (
    BEAM_OUTPUT,
    DTYPE_NAMES,
    GREEDY_OUTPUT,
    MARGIN,
    beam_one_decoder,
    check_beam_rows,
    check_decoded,
    check_greedy_and_beam_one_agree_with_teacher_forcing,
    check_layout,
    check_wide_beam_agrees_with_teacher_forcing,
    greedy_bugs,
    greedy_decoder,
    padded_source,
    run_beam_search,
    wide_beam_bugs,
)
from tests.support.checks import assert_equal, check
from tests.support.oracles import decoding as oracle
from tests.support.oracles.decoding import BOS, EOS, PAD, A, B
from tests.support.strategies import seeds


def random_transformer(impl, seed, src_vocab, tgt_vocab, eos_bias, pad_id=PAD, bos_id=BOS):
    """The implementation's own Transformer (two layers: with one, the last position would not
    notice a missing causal mask) with weights from a seeded generator (buffers such as the
    positional table are kept); <pad> and <s> are never generated."""
    model = impl.model.Transformer(
        src_vocab, tgt_vocab, d_model=8, num_heads=2, num_layers=2, d_ff=16, dropout=0.0, max_len=64, pad_id=pad_id
    )
    buffers = dict(model.named_buffers())
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        if name in buffers or not value.is_floating_point():
            state[name] = value
        else:
            state[name] = torch.randn(value.shape, generator=generator, dtype=torch.float64).to(value.dtype) * 0.7
    state["generator.bias"] = state["generator.bias"].clone()
    state["generator.bias"][EOS] += eos_bias
    for token in (pad_id, bos_id):
        state["generator.weight"][token] = 0.0
        state["generator.bias"][token] = FORBIDDEN_LOGIT
    model.load_state_dict(state, strict=True)
    model.eval()
    model.double()
    return model


@settings(max_examples=10)
@given(
    batch=st.integers(1, 3),
    src_len=st.integers(1, 5),
    max_len=st.integers(1, 6),
    seed=seeds,
    eos_bias=st.sampled_from([0.0, 2.0]),
)
def test_greedy_matches_naive_loop_on_the_transformer(impl, batch, src_len, max_len, seed, eos_bias):
    model = random_transformer(impl, seed, 9, 7, eos_bias)
    src, mask = padded_source(batch, src_len, seed)
    actual = impl.decoding.greedy_decode(model, src, mask, max_len, BOS, EOS)
    rows, margin = oracle.greedy_rows(model, src, mask, max_len, BOS, EOS)
    assume(margin > 1e-6)
    case = _(
        "greedy_decode on your two-layer Transformer with random weights (B={batch}, T_src={src_len}, "
        "max_len={max_len})",
        batch=batch,
        src_len=src_len,
        max_len=max_len,
    )
    # No teacher-forcing check here: it would also fail a correct decoder on a model whose decoder
    # layers ignore tgt_mask (a `layers` bug); the naive loop passes the same masks as the decoder.
    check_decoded(
        actual,
        rows,
        max_len,
        what=GREEDY_OUTPUT,
        case=case,
        hint=_("decode the whole prefix under a causal mask; argmax of the last position's logits"),
        likely_bugs=lambda: greedy_bugs(model, src, mask, max_len, rows, greedy_decoder(impl)),
    )


@given(
    batch=st.integers(1, 5),
    src_len=st.integers(1, 8),
    max_len=st.integers(1, 10),
    seed=seeds,
    dtype=st.sampled_from(DTYPE_NAMES),
    eos_bias=st.sampled_from([-1.0, 0.5, 2.0]),
)
def test_greedy_matches_naive_loop_larger(impl, batch, src_len, max_len, seed, dtype, eos_bias):
    toy = PrefixToy.random(seed + 7, vocab_size=12, src_vocab_size=11, d_model=10, eos_bias=eos_bias, dtype=dtype)
    src, mask = padded_source(batch, src_len, seed + 3, vocab=11)
    actual = impl.decoding.greedy_decode(toy, src, mask, max_len, BOS, EOS)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(
        actual,
        rows,
        max_len,
        what=GREEDY_OUTPUT,
        case=_(
            "greedy_decode on a random {dtype} model (B={batch}, T_src={src_len}, max_len={max_len})",
            dtype=dtype,
            batch=batch,
            src_len=src_len,
            max_len=max_len,
        ),
        likely_bugs=lambda: greedy_bugs(toy, src, mask, max_len, rows, greedy_decoder(impl)),
    )


OTHER_IDS = {"pad": 3, "bos": 0, "eos": 1}
IDS_HINT = _("use model.pad_id, bos_id and eos_id as given; never hard-code 0, 1, 2")
PADDED_WITH_ZERO = _("the output is padded with 0 instead of model.pad_id")


def too_many_columns(actual, max_len):
    return _("the output has {columns} columns, more than max_len={max_len}", columns=actual.shape[1], max_len=max_len)


def source_with_pad(batch, length, seed, pad_id):
    src, mask = padded_source(batch, length, seed, vocab=10)
    src[~mask[:, 0]] = pad_id
    src[mask[:, 0] & (src == pad_id)] = 9
    return src, mask


@given(batch=st.integers(1, 4), max_len=st.integers(1, 6), seed=seeds)
def test_greedy_uses_the_models_token_ids(impl, batch, max_len, seed):
    pad, bos, eos = OTHER_IDS["pad"], OTHER_IDS["bos"], OTHER_IDS["eos"]
    toy = PrefixToy.random(
        seed, vocab_size=8, src_vocab_size=10, d_model=6, pad_id=pad, bos_id=bos, eos_id=eos, eos_bias=1.5
    )
    src, mask = source_with_pad(batch, 4, seed, pad)
    actual = impl.decoding.greedy_decode(toy, src, mask, max_len, bos, eos)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, bos, eos)
    assume(margin > MARGIN)
    case = _(
        "greedy_decode(max_len={max_len}) with pad_id=3, bos_id=0, eos_id=1 (B={batch})", max_len=max_len, batch=batch
    )
    check_layout(actual, batch, max_len, case)
    expected = oracle.layout(rows, pad)
    assert_equal(
        oracle.strip_trailing_pad(actual, pad),
        expected,
        what=GREEDY_OUTPUT,
        case=case,
        hint=IDS_HINT,
        likely_bugs={PADDED_WITH_ZERO: oracle.layout(rows, 0)},
    )
    check(actual.shape[1] <= max_len, too_many_columns(actual, max_len), case=case)


@given(batch=st.integers(1, 4), seed=seeds)
def test_greedy_max_len_one(impl, batch, seed):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6)
    src, mask = padded_source(batch, 3, seed)
    actual = impl.decoding.greedy_decode(toy, src, mask, 1, BOS, EOS)
    rows, margin = oracle.greedy_rows(toy, src, mask, 1, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(
        actual,
        rows,
        1,
        what=GREEDY_OUTPUT,
        case=_("greedy_decode(max_len=1): one token per row (B={batch})", batch=batch),
        hint=_("the leading <s> is not part of the output and does not count towards max_len"),
    )


def test_greedy_when_every_row_ends_at_once(impl):
    toy = MarkovToy.random(3, vocab_size=6, eos_bias=80.0)
    src, mask = padded_source(4, 3, 11)
    actual = impl.decoding.greedy_decode(toy, src, mask, 7, BOS, EOS)
    check_decoded(
        actual,
        [[EOS]] * 4,
        7,
        what=GREEDY_OUTPUT,
        case=_("greedy_decode(max_len=7) where every row produces </s> first (B=4)"),
        hint=_("a row that starts with </s> is just [</s>]"),
    )


# --- beam search ----------------------------------------------------------------------------------


@given(
    batch=st.integers(1, 4),
    max_len=st.integers(1, 8),
    seed=seeds,
    dtype=st.sampled_from(DTYPE_NAMES),
    alpha=st.sampled_from([0.0, 0.6, 1.5]),
)
def test_beam_size_one_equals_greedy_larger(impl, batch, max_len, seed, dtype, alpha):
    toy = SourceMarkovToy.random(seed, num_contexts=5, vocab_size=9, eos_bias=0.5, dtype=dtype)
    src, mask = padded_source(batch, 4, seed + 1, vocab=12)
    actual = run_beam_search(impl, toy, src, mask, max_len, BOS, EOS, beam_size=1, length_penalty=alpha)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(
        actual,
        rows,
        max_len,
        what=_("beam_search output vs greedy decoding"),
        case=_(
            "beam_search(beam_size=1, length_penalty={alpha}, max_len={max_len}) on a random {dtype} model (B={batch})",
            alpha=alpha,
            max_len=max_len,
            dtype=dtype,
            batch=batch,
        ),
        hint=_("with one beam, every step keeps the single most probable continuation: greedy decoding"),
        likely_bugs=lambda: greedy_bugs(toy, src, mask, max_len, rows, beam_one_decoder(impl)),
    )


@st.composite
def wide_settings(draw):
    real_tokens = draw(st.integers(1, 3))
    max_len = draw(st.integers(1, {1: 6, 2: 4, 3: 3}[real_tokens]))
    return real_tokens, max_len


@settings(max_examples=20)
@given(
    kind=st.sampled_from(["source", "prefix"]),
    settings_=wide_settings(),
    batch=st.integers(1, 4),
    seed=seeds,
    alpha=st.sampled_from([0.0, 0.3, 0.6, 1.0, 2.0]),
    dtype=st.sampled_from(DTYPE_NAMES),
)
def test_wide_beam_returns_the_exact_optimum_larger(impl, kind, settings_, batch, seed, alpha, dtype):
    real_tokens, max_len = settings_
    allowed = [EOS] + list(range(3, 3 + real_tokens))
    vocab = 48
    if kind == "source":
        toy = SourceMarkovToy.random(seed, 4, vocab, allowed=allowed, scale=2.5, dtype=dtype)
    else:
        toy = PrefixToy.random(seed, vocab, 12, d_model=8, allowed=allowed, scale=2.0, dtype=dtype)
    src, mask = padded_source(batch, 5, seed + 5, vocab=12)
    count = oracle.hypothesis_count(max_len, real_tokens)
    actual = run_beam_search(impl, toy, src, mask, max_len, BOS, EOS, beam_size=count, length_penalty=alpha)
    rows, margin, _count = oracle.brute_force_best(toy, src, mask, max_len, BOS, EOS, alpha, allowed)
    assume(margin > MARGIN)
    check_beam_rows(
        impl,
        actual,
        toy,
        src,
        mask,
        max_len,
        rows,
        dict(beam_size=count, length_penalty=alpha),
        what=_("beam_search output vs the best of all hypotheses"),
        case=_(
            "beam_search(beam_size={count} = every hypothesis, length_penalty={alpha}, "
            "max_len={max_len}) on a random {kind} toy (B={batch}, {dtype})",
            count=count,
            alpha=alpha,
            max_len=max_len,
            kind=kind,
            batch=batch,
            dtype=dtype,
        ),
        hint=_("score = log P / ((5 + |y|) / 6) ** alpha over ended hypotheses and those open at max_len"),
        likely_bugs=lambda: wide_beam_bugs(toy, src, mask, max_len, alpha, allowed, beam_one_decoder(impl)),
    )


def test_beam_rows_of_a_batch_do_not_mix(impl):
    # 24 ids, of which only </s>, A and B occur: room for a beam wider than the 15 hypotheses
    toy = SourceMarkovToy.random(17, num_contexts=4, vocab_size=24, allowed=[EOS, A, B], scale=2.5)
    src = torch.tensor([[4, 5, 0], [5, 0, 0], [6, 7, 8], [7, 4, 0]])  # contexts 0, 1, 2, 3
    mask = (src != PAD).unsqueeze(1)
    rows, margin, count = oracle.brute_force_best(toy, src, mask, 3, BOS, EOS, 0.6, [EOS, A, B])
    check(margin > 1e-3 and len({tuple(r) for r in rows}) > 1, _("test setup: the rows should differ clearly"))
    for beam_size in (count, count + 3):
        options = dict(beam_size=beam_size, length_penalty=0.6)
        actual = run_beam_search(impl, toy, src, mask, 3, BOS, EOS, **options)
        check_beam_rows(
            impl,
            actual,
            toy,
            src,
            mask,
            3,
            rows,
            options,
            what=BEAM_OUTPUT,
            case=_(
                "beam_search(beam_size={beam_size}, max_len=3) of 4 sources with different tables", beam_size=beam_size
            ),
            hint=_(
                "expand memory and src_mask with repeat_interleave (hypothesis b*K+k belongs to row b) "
                "and reorder the hypotheses within their own row only"
            ),
        )


def test_beam_counts_eos_in_the_length(impl):
    # [A, </s>] (log P -0.973) and [A, A] (open at max_len = 2, log P -1.021) both have |y| = 2.
    toy = MarkovToy.from_probs(
        oracle.prob_matrix(
            5,
            {
                BOS: {A: 0.9, B: 0.05, EOS: 0.05},
                A: {EOS: 0.42, A: 0.40, B: 0.18},
                B: {EOS: 0.5, B: 0.5},
                EOS: {A: 1.0},
            },
        )
    )
    src = torch.tensor([[3, 4]])
    mask = (src != PAD).unsqueeze(1)
    actual = run_beam_search(impl, toy, src, mask, 2, BOS, EOS, beam_size=4, length_penalty=0.6)
    check_decoded(
        actual,
        [[A, EOS]],
        2,
        what=BEAM_OUTPUT,
        case=_(
            "beam_search(beam_size=4, length_penalty=0.6, max_len=2) where [A, </s>] (log P -0.973) "
            "competes with [A, A] (log P -1.021, open at max_len)"
        ),
        hint=_("|y| counts the generated tokens including </s>: both have |y| = 2, the higher log P wins"),
        likely_bugs={_("</s> is not counted in |y| of the length penalty"): oracle.layout([[A, A]], PAD)},
    )


DEFAULTS_HINT = _("the defaults are beam_size=4, length_penalty=0.6 (paper §6.1)")


def test_beam_defaults_are_the_papers(impl):
    src = torch.tensor([[5, 6, 7]])
    mask = (src != PAD).unsqueeze(1)
    actual = run_beam_search(impl, oracle.length_penalty_toy(), src, mask, 4, BOS, EOS)
    check_decoded(
        actual,
        [oracle.LENGTH_PENALTY_LONG],
        4,
        what=BEAM_OUTPUT,
        case=_("beam_search(max_len=4) with the default length_penalty (0.6) where it changes the winner"),
        hint=DEFAULTS_HINT,
    )
    actual = run_beam_search(impl, oracle.greedy_trap_toy(), src, mask, 4, BOS, EOS)
    check_decoded(
        actual,
        [oracle.GREEDY_TRAP_BEST],
        4,
        what=BEAM_OUTPUT,
        case=_("beam_search(max_len=4) with the default beam_size (4) where greedy is wrong"),
        hint=DEFAULTS_HINT,
    )


@given(seed=seeds, max_len=st.integers(1, 3), beam_size=st.sampled_from([1, 40]))
def test_beam_uses_the_models_token_ids(impl, seed, max_len, beam_size):
    pad, bos, eos = OTHER_IDS["pad"], OTHER_IDS["bos"], OTHER_IDS["eos"]
    allowed = [eos, 2, 4, 5]
    toy = PrefixToy.random(
        seed,
        vocab_size=48,
        src_vocab_size=10,
        d_model=6,
        pad_id=pad,
        bos_id=bos,
        eos_id=eos,
        allowed=allowed,
        eos_bias=1.0,
        scale=2.0,
    )
    src, mask = source_with_pad(3, 4, seed, pad)
    actual = run_beam_search(impl, toy, src, mask, max_len, bos, eos, beam_size=beam_size)
    if beam_size == 1:
        rows, margin = oracle.greedy_rows(toy, src, mask, max_len, bos, eos)
    else:
        rows, margin, _count = oracle.brute_force_best(toy, src, mask, max_len, bos, eos, 0.6, allowed)
    assume(margin > MARGIN)
    case = _(
        "beam_search(beam_size={beam_size}, max_len={max_len}) with pad_id=3, bos_id=0, eos_id=1 (B=3)",
        beam_size=beam_size,
        max_len=max_len,
    )
    check_layout(actual, 3, max_len, case)
    assert_equal(
        oracle.strip_trailing_pad(actual, pad),
        oracle.layout(rows, pad),
        what=BEAM_OUTPUT,
        case=case,
        hint=IDS_HINT,
        likely_bugs={PADDED_WITH_ZERO: oracle.layout(rows, 0)},
    )
    check(actual.shape[1] <= max_len, too_many_columns(actual, max_len), case=case)


def test_beam_when_every_hypothesis_ends_at_once(impl):
    toy = MarkovToy.random(5, vocab_size=6, eos_bias=80.0)
    src, mask = padded_source(3, 2, 2)
    for beam_size in (1, 3):
        actual = run_beam_search(impl, toy, src, mask, 6, BOS, EOS, beam_size=beam_size)
        check_decoded(
            actual,
            [[EOS]] * 3,
            6,
            what=BEAM_OUTPUT,
            case=_(
                "beam_search(beam_size={beam_size}, max_len=6) when </s> is almost certain (B=3)", beam_size=beam_size
            ),
            hint=_("a hypothesis that starts with </s> is [</s>]; stop when every hypothesis has ended"),
        )


@given(seed=seeds, batch=st.integers(1, 3), dtype=st.sampled_from(DTYPE_NAMES))
def test_beam_max_len_one_picks_the_most_probable_token(impl, seed, batch, dtype):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6, dtype=dtype)
    src, mask = padded_source(batch, 3, seed)
    actual = run_beam_search(impl, toy, src, mask, 1, BOS, EOS, beam_size=3)
    rows, margin = oracle.greedy_rows(toy, src, mask, 1, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(
        actual,
        rows,
        1,
        what=BEAM_OUTPUT,
        case=_(
            "beam_search(beam_size=3, max_len=1) on a random {dtype} model (B={batch}): every hypothesis has |y| = 1",
            dtype=dtype,
            batch=batch,
        ),
        hint=_("with max_len=1 the most probable first token wins"),
    )


# --- agreement with teacher forcing on deeper mask-sensitive toys ---------------------------------


@given(
    batch=st.integers(1, 5),
    src_len=st.integers(1, 8),
    max_len=st.integers(2, 10),
    seed=seeds,
    num_layers=st.integers(2, 3),
    dtype=st.sampled_from(DTYPE_NAMES),
    eos_bias=st.sampled_from([-1.0, 0.5]),
)
def test_greedy_agrees_with_teacher_forcing_larger(impl, batch, src_len, max_len, seed, num_layers, dtype, eos_bias):
    toy = AttentionToy.random(
        seed + 11, vocab_size=12, src_vocab_size=11, d_model=10, num_layers=num_layers, eos_bias=eos_bias, dtype=dtype
    )
    src, mask = padded_source(batch, src_len, seed + 3, vocab=11)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    assume(margin > MARGIN)
    sizes = dict(layers=num_layers, max_len=max_len, dtype=dtype, batch=batch, src_len=src_len)
    check_greedy_and_beam_one_agree_with_teacher_forcing(
        impl,
        toy,
        src,
        mask,
        max_len,
        rows,
        _(
            "greedy_decode(max_len={max_len}) on a random {layers}-layer {dtype} model whose self-attention uses "
            "tgt_mask (B={batch}, T_src={src_len}, padded sources)",
            **sizes,
        ),
        _(
            "beam_search(beam_size=1, max_len={max_len}) on a random {layers}-layer {dtype} model whose "
            "self-attention uses tgt_mask (B={batch}, T_src={src_len}, padded sources)",
            **sizes,
        ),
    )


@settings(max_examples=20)
@given(
    settings_=st.sampled_from([(2, 2), (2, 3), (2, 4), (3, 2), (3, 3)]),
    batch=st.integers(2, 4),
    src_len=st.integers(2, 7),
    seed=seeds,
    alpha=st.sampled_from([0.0, 0.6, 1.5]),
    dtype=st.sampled_from(DTYPE_NAMES),
)
def test_wide_beam_agrees_with_teacher_forcing_larger(impl, settings_, batch, src_len, seed, alpha, dtype):
    real_tokens, max_len = settings_
    allowed = [EOS] + list(range(3, 3 + real_tokens))
    toy = AttentionToy.random(seed + 5, 48, 12, d_model=8, num_layers=3, allowed=allowed, scale=1.5, dtype=dtype)
    src, mask = padded_source(batch, src_len, seed + 2, vocab=12)
    check_wide_beam_agrees_with_teacher_forcing(
        impl, toy, src, mask, max_len, alpha, allowed, real_tokens, layers=3, dtype=dtype
    )
