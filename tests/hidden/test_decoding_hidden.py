"""Part `decoding` (hidden): greedy_decode and beam_search (paper §6.1) on more sizes, other
token ids, the paper's defaults (beam 4, α = 0.6), and the student's own Transformer.

Same conventions as tests/public/test_decoding.py: trusted toys, a naive one-row-at-a-time
greedy loop and brute-force enumeration of every hypothesis as references; trailing all-<pad>
columns are ignored, L <= max_len is checked separately.
"""
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from grader.runtime.toys import FORBIDDEN_LOGIT, MarkovToy, PrefixToy, SourceMarkovToy
from tests.public.test_decoding import (
    DTYPE_NAMES,
    MARGIN,
    check_decoded,
    check_layout,
    greedy_bugs,
    padded_source,
)
from tests.support.checks import assert_equal, check
from tests.support.oracles import decoding as oracle
from tests.support.oracles.decoding import A, B, BOS, EOS, PAD
from tests.support.strategies import seeds


def random_transformer(impl, seed, src_vocab, tgt_vocab, eos_bias, pad_id=PAD, bos_id=BOS):
    """The implementation's own Transformer with weights from a seeded generator (buffers
    such as the positional table are kept); <pad> and <s> are never generated."""
    model = impl.model.Transformer(src_vocab, tgt_vocab, d_model=8, num_heads=2, num_layers=1, d_ff=16,
                                   dropout=0.0, max_len=64, pad_id=pad_id)
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
@given(batch=st.integers(1, 3), src_len=st.integers(1, 5), max_len=st.integers(1, 6), seed=seeds,
       eos_bias=st.sampled_from([0.0, 2.0]))
def test_greedy_matches_naive_loop_on_the_transformer(impl, batch, src_len, max_len, seed, eos_bias):
    model = random_transformer(impl, seed, 9, 7, eos_bias)
    src, mask = padded_source(batch, src_len, seed)
    actual = impl.decoding.greedy_decode(model, src, mask, max_len, BOS, EOS)
    rows, margin = oracle.greedy_rows(model, src, mask, max_len, BOS, EOS)
    assume(margin > 1e-6)
    check_decoded(actual, rows, max_len,
                  what=f"greedy_decode on your Transformer with random weights (B={batch}, max_len={max_len})",
                  hint="decode the whole prefix under a causal mask; argmax of the last position's logits",
                  likely_bugs=greedy_bugs(model, src, mask, max_len, rows))


@given(batch=st.integers(1, 5), src_len=st.integers(1, 8), max_len=st.integers(1, 10), seed=seeds,
       dtype=st.sampled_from(DTYPE_NAMES), eos_bias=st.sampled_from([-1.0, 0.5, 2.0]))
def test_greedy_matches_naive_loop_larger(impl, batch, src_len, max_len, seed, dtype, eos_bias):
    toy = PrefixToy.random(seed + 7, vocab_size=12, src_vocab_size=11, d_model=10, eos_bias=eos_bias, dtype=dtype)
    src, mask = padded_source(batch, src_len, seed + 3, vocab=11)
    actual = impl.decoding.greedy_decode(toy, src, mask, max_len, BOS, EOS)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(actual, rows, max_len, what=f"greedy_decode (B={batch}, T_src={src_len}, max_len={max_len}, {dtype})",
                  likely_bugs=greedy_bugs(toy, src, mask, max_len, rows))


OTHER_IDS = {"pad": 3, "bos": 0, "eos": 1}


def source_with_pad(batch, length, seed, pad_id):
    src, mask = padded_source(batch, length, seed, vocab=10)
    src[~mask[:, 0]] = pad_id
    src[mask[:, 0] & (src == pad_id)] = 9
    return src, mask


@given(batch=st.integers(1, 4), max_len=st.integers(1, 6), seed=seeds)
def test_greedy_uses_the_models_token_ids(impl, batch, max_len, seed):
    pad, bos, eos = OTHER_IDS["pad"], OTHER_IDS["bos"], OTHER_IDS["eos"]
    toy = PrefixToy.random(seed, vocab_size=8, src_vocab_size=10, d_model=6, pad_id=pad, bos_id=bos, eos_id=eos,
                           eos_bias=1.5)
    src, mask = source_with_pad(batch, 4, seed, pad)
    actual = impl.decoding.greedy_decode(toy, src, mask, max_len, bos, eos)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, bos, eos)
    assume(margin > MARGIN)
    check_layout(actual, batch, max_len, "greedy_decode with pad_id=3, bos_id=0, eos_id=1")
    expected = oracle.layout(rows, pad)
    assert_equal(oracle.strip_trailing_pad(actual, pad), expected,
                 what="greedy_decode with pad_id=3, bos_id=0, eos_id=1",
                 hint="use model.pad_id, bos_id and eos_id as given; never hard-code 0, 1, 2",
                 likely_bugs={"the output is padded with 0 instead of model.pad_id": oracle.layout(rows, 0)})
    check(actual.shape[1] <= max_len, f"greedy_decode returned {actual.shape[1]} columns for max_len={max_len}")


@given(batch=st.integers(1, 4), seed=seeds)
def test_greedy_max_len_one(impl, batch, seed):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6)
    src, mask = padded_source(batch, 3, seed)
    actual = impl.decoding.greedy_decode(toy, src, mask, 1, BOS, EOS)
    rows, margin = oracle.greedy_rows(toy, src, mask, 1, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(actual, rows, 1, what="greedy_decode with max_len=1: one token per row",
                  hint="the leading <s> is not part of the output and does not count towards max_len")


def test_greedy_when_every_row_ends_at_once(impl):
    toy = MarkovToy.random(3, vocab_size=6, eos_bias=80.0)
    src, mask = padded_source(4, 3, 11)
    actual = impl.decoding.greedy_decode(toy, src, mask, 7, BOS, EOS)
    check_decoded(actual, [[EOS]] * 4, 7, what="greedy_decode when every row produces </s> first",
                  hint="a row that starts with </s> is just [</s>]")


# --- beam search ----------------------------------------------------------------------------------

@given(batch=st.integers(1, 4), max_len=st.integers(1, 8), seed=seeds, dtype=st.sampled_from(DTYPE_NAMES),
       alpha=st.sampled_from([0.0, 0.6, 1.5]))
def test_beam_size_one_equals_greedy_larger(impl, batch, max_len, seed, dtype, alpha):
    toy = SourceMarkovToy.random(seed, num_contexts=5, vocab_size=9, eos_bias=0.5, dtype=dtype)
    src, mask = padded_source(batch, 4, seed + 1, vocab=12)
    actual = impl.decoding.beam_search(toy, src, mask, max_len, BOS, EOS, beam_size=1, length_penalty=alpha)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(actual, rows, max_len, what=f"beam_search(beam_size=1, length_penalty={alpha}), B={batch}",
                  hint="with one beam the search keeps the most probable continuation: greedy decoding",
                  likely_bugs=greedy_bugs(toy, src, mask, max_len, rows))


@st.composite
def wide_settings(draw):
    real_tokens = draw(st.integers(1, 3))
    max_len = draw(st.integers(1, {1: 6, 2: 4, 3: 3}[real_tokens]))
    return real_tokens, max_len


@settings(max_examples=20)
@given(kind=st.sampled_from(["source", "prefix"]), settings_=wide_settings(), batch=st.integers(1, 4),
       seed=seeds, alpha=st.sampled_from([0.0, 0.3, 0.6, 1.0, 2.0]), dtype=st.sampled_from(DTYPE_NAMES))
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
    actual = impl.decoding.beam_search(toy, src, mask, max_len, BOS, EOS, beam_size=count, length_penalty=alpha)
    rows, margin, _ = oracle.brute_force_best(toy, src, mask, max_len, BOS, EOS, alpha, allowed)
    assume(margin > MARGIN)
    raw_rows, _, _ = oracle.brute_force_best(toy, src, mask, max_len, BOS, EOS, 0.0, allowed)
    bugs = {}
    if raw_rows != rows:
        bugs["no length normalisation: the final choice uses the raw log-probability"] = oracle.layout(raw_rows, PAD)
    check_decoded(actual, rows, max_len,
                  what=f"beam_search(beam_size={count} = every hypothesis, length_penalty={alpha}) on a {kind} toy, "
                       f"B={batch}, max_len={max_len}",
                  hint="score = log P / ((5 + |y|) / 6) ** alpha over ended hypotheses and those open at max_len",
                  likely_bugs=bugs)


def test_beam_rows_of_a_batch_do_not_mix(impl):
    toy = SourceMarkovToy.random(17, num_contexts=4, vocab_size=6, allowed=[EOS, A, B], scale=2.5)
    src = torch.tensor([[4, 5, 0], [5, 0, 0], [6, 7, 8], [7, 4, 0]])  # contexts 0, 1, 2, 3
    mask = (src != PAD).unsqueeze(1)
    rows, margin, count = oracle.brute_force_best(toy, src, mask, 3, BOS, EOS, 0.6, [EOS, A, B])
    check(margin > 1e-3 and len({tuple(r) for r in rows}) > 1, "test setup: the rows should differ clearly")
    for beam_size in (count, count + 3):
        actual = impl.decoding.beam_search(toy, src, mask, 3, BOS, EOS, beam_size=beam_size, length_penalty=0.6)
        check_decoded(actual, rows, 3, what=f"beam_search(beam_size={beam_size}) of 4 sources with different tables",
                      hint="expand memory and src_mask with repeat_interleave (hypothesis b*K+k belongs to row b) "
                           "and reorder the hypotheses within their own row only")


def test_beam_counts_eos_in_the_length(impl):
    # [A, </s>] (log P -0.973) and [A, A] (open at max_len = 2, log P -1.021) both have |y| = 2.
    toy = MarkovToy.from_probs(oracle.prob_matrix(5, {
        BOS: {A: 0.9, B: 0.05, EOS: 0.05},
        A: {EOS: 0.42, A: 0.40, B: 0.18},
        B: {EOS: 0.5, B: 0.5},
        EOS: {A: 1.0},
    }))
    src = torch.tensor([[3, 4]])
    mask = (src != PAD).unsqueeze(1)
    actual = impl.decoding.beam_search(toy, src, mask, 2, BOS, EOS, beam_size=4, length_penalty=0.6)
    check_decoded(actual, [[A, EOS]], 2,
                  what="beam_search where [A, </s>] (log P -0.973) competes with [A, A] (log P -1.021, open at max_len=2)",
                  hint="|y| counts the generated tokens including </s>: both have |y| = 2, the higher log P wins",
                  likely_bugs={"</s> is not counted in |y| of the length penalty": oracle.layout([[A, A]], PAD)})


def test_beam_defaults_are_the_papers(impl):
    src = torch.tensor([[5, 6, 7]])
    mask = (src != PAD).unsqueeze(1)
    actual = impl.decoding.beam_search(oracle.length_penalty_toy(), src, mask, 4, BOS, EOS)
    check_decoded(actual, [oracle.LENGTH_PENALTY_LONG], 4,
                  what="beam_search with the default length_penalty (0.6) where it changes the winner",
                  hint="the defaults are beam_size=4, length_penalty=0.6 (paper §6.1)")
    actual = impl.decoding.beam_search(oracle.greedy_trap_toy(), src, mask, 4, BOS, EOS)
    check_decoded(actual, [oracle.GREEDY_TRAP_BEST], 4,
                  what="beam_search with the default beam_size (4) where greedy is wrong",
                  hint="the defaults are beam_size=4, length_penalty=0.6 (paper §6.1)")


@given(seed=seeds, max_len=st.integers(1, 3), beam_size=st.sampled_from([1, 40]))
def test_beam_uses_the_models_token_ids(impl, seed, max_len, beam_size):
    pad, bos, eos = OTHER_IDS["pad"], OTHER_IDS["bos"], OTHER_IDS["eos"]
    allowed = [eos, 2, 4, 5]
    toy = PrefixToy.random(seed, vocab_size=48, src_vocab_size=10, d_model=6, pad_id=pad, bos_id=bos, eos_id=eos,
                           allowed=allowed, eos_bias=1.0, scale=2.0)
    src, mask = source_with_pad(3, 4, seed, pad)
    actual = impl.decoding.beam_search(toy, src, mask, max_len, bos, eos, beam_size=beam_size)
    if beam_size == 1:
        rows, margin = oracle.greedy_rows(toy, src, mask, max_len, bos, eos)
    else:
        rows, margin, _ = oracle.brute_force_best(toy, src, mask, max_len, bos, eos, 0.6, allowed)
    assume(margin > MARGIN)
    check_layout(actual, 3, max_len, "beam_search with pad_id=3, bos_id=0, eos_id=1")
    assert_equal(oracle.strip_trailing_pad(actual, pad), oracle.layout(rows, pad),
                 what=f"beam_search(beam_size={beam_size}) with pad_id=3, bos_id=0, eos_id=1",
                 hint="use model.pad_id, bos_id and eos_id as given; never hard-code 0, 1, 2",
                 likely_bugs={"the output is padded with 0 instead of model.pad_id": oracle.layout(rows, 0)})
    check(actual.shape[1] <= max_len, f"beam_search returned {actual.shape[1]} columns for max_len={max_len}")


def test_beam_when_every_hypothesis_ends_at_once(impl):
    toy = MarkovToy.random(5, vocab_size=6, eos_bias=80.0)
    src, mask = padded_source(3, 2, 2)
    for beam_size in (1, 3):
        actual = impl.decoding.beam_search(toy, src, mask, 6, BOS, EOS, beam_size=beam_size)
        check_decoded(actual, [[EOS]] * 3, 6, what=f"beam_search(beam_size={beam_size}) when </s> is almost certain",
                      hint="a hypothesis that starts with </s> is [</s>]; stop when every hypothesis has ended")


@given(seed=seeds, batch=st.integers(1, 3), dtype=st.sampled_from(DTYPE_NAMES))
def test_beam_max_len_one_picks_the_most_probable_token(impl, seed, batch, dtype):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6, dtype=dtype)
    src, mask = padded_source(batch, 3, seed)
    actual = impl.decoding.beam_search(toy, src, mask, 1, BOS, EOS, beam_size=3)
    rows, margin = oracle.greedy_rows(toy, src, mask, 1, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(actual, rows, 1, what="beam_search with max_len=1 (every hypothesis has |y| = 1)",
                  hint="with max_len=1 the most probable first token wins")
