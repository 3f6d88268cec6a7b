"""Part `decoding`: greedy_decode and beam_search (paper §6.1: beam size 4, length penalty
α = 0.6, Wu et al. 2016).

The models are trusted toys (grader/runtime/toys.py) whose next-token distributions are
known, so the expected tokens come from a naive one-row-at-a-time loop or from enumerating
every hypothesis (tests/support/oracles/decoding.py). Output layout of both decoders: (B, L)
long, no leading <s>, <pad> after </s>, L <= max_len. Trailing all-<pad> columns are ignored.
"""
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from grader.runtime.toys import MarkovToy, PrefixToy, SourceMarkovToy
from tests.support.checks import assert_equal, check
from tests.support.oracles import decoding as oracle
from tests.support.oracles.decoding import A, B, BOS, EOS, PAD
from tests.support.strategies import batch_sizes, int_tensor, lengths_with_padding, seeds

DTYPE_NAMES = ("float32", "float64")
MARGIN = 1e-4  # skip random models whose best and second-best choices are closer than this


def padded_source(batch, length, seed, vocab=9):
    """(B, T) source tokens in [3, vocab) with right padding, and the (B, 1, T) mask."""
    src = int_tensor((batch, length), seed, 3, vocab)
    real = torch.tensor(lengths_with_padding(batch, length, seed + 1))
    src[torch.arange(length)[None, :] >= real[:, None]] = PAD
    return src, (src != PAD).unsqueeze(1)


def check_layout(actual, batch, max_len, what):
    check(isinstance(actual, torch.Tensor), f"{what}: expected a torch.Tensor, got {type(actual).__name__}")
    check(actual.dim() == 2 and actual.shape[0] == batch,
          f"{what}: expected shape (B={batch}, L), got {tuple(actual.shape)}",
          "one row per source sentence, one column per generated token")


def check_decoded(actual, expected_rows, max_len, what, hint="", likely_bugs=None):
    """The tokens (trailing all-pad columns ignored), then the dtype, then L <= max_len."""
    check_layout(actual, len(expected_rows), max_len, what)
    expected = oracle.layout(expected_rows, PAD)
    bugs = {text: oracle.strip_trailing_pad(t, PAD) for text, t in (likely_bugs or {}).items()}
    assert_equal(oracle.strip_trailing_pad(actual, PAD), expected, what=what, hint=hint, likely_bugs=bugs)
    check(actual.shape[1] <= max_len,
          f"{what}: {actual.shape[1]} columns for max_len={max_len}",
          "generate at most max_len tokens and do not return the leading <s>")


def greedy_bugs(toy, src, mask, max_len, rows):
    no_stop = oracle.greedy_rows_ignoring_eos(toy, src, mask, max_len, BOS)
    expected = oracle.layout(rows, PAD)
    return {
        "the leading <s> is part of the output (return the generated tokens only)":
            oracle.with_bos(expected, BOS),
        "finished rows keep getting the argmax token: every position after a row's </s> must be <pad>":
            oracle.bug_no_stop_until_all_done(no_stop, rows, PAD),
        "decoding does not stop at </s>: it runs to max_len and writes argmax tokens after </s>":
            oracle.layout(no_stop, PAD),
    }


# --- greedy ---------------------------------------------------------------------------------------

@given(batch=batch_sizes, src_len=st.integers(1, 5), max_len=st.integers(1, 6), seed=seeds,
       dtype=st.sampled_from(DTYPE_NAMES), eos_bias=st.sampled_from([0.0, 1.5, 3.0]))
def test_greedy_matches_naive_loop(impl, batch, src_len, max_len, seed, dtype, eos_bias):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6, eos_bias=eos_bias, dtype=dtype)
    src, mask = padded_source(batch, src_len, seed)
    actual = impl.decoding.greedy_decode(toy, src, mask, max_len, BOS, EOS)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(
        actual, rows, max_len,
        what=f"greedy_decode on a random {dtype} model (B={batch}, T_src={src_len}, max_len={max_len})",
        hint="encode once; each step decode the whole prefix <s> y_1..y_t under causal_mask(t+1), take the "
             "argmax of the LAST position's logits; <pad> after a row's </s>; stop when all rows ended",
        likely_bugs=greedy_bugs(toy, src, mask, max_len, rows),
    )


def test_greedy_pads_finished_rows_and_reads_the_source(impl):
    toy = oracle.two_context_toy()
    src = torch.tensor([[4, 7, 0], [3, 0, 0]])  # first token even -> [A, </s>], odd -> [B, C, </s>]
    mask = (src != PAD).unsqueeze(1)
    rows = [oracle.TWO_CONTEXT_EVEN, oracle.TWO_CONTEXT_ODD]
    actual = impl.decoding.greedy_decode(toy, src, mask, 5, BOS, EOS)
    check_decoded(
        actual, rows, 5, what="greedy_decode of two sources whose translations end at different steps",
        hint="row 0 ends after 2 tokens, row 1 after 3: row 0 must hold <pad> after its </s>",
        likely_bugs={
            **greedy_bugs(toy, src, mask, 5, rows),
            "the source is ignored (both rows decoded from the same memory)":
                oracle.layout([oracle.TWO_CONTEXT_EVEN] * 2, PAD),
        },
    )
    swapped = impl.decoding.greedy_decode(toy, src.flip(0), mask.flip(0), 5, BOS, EOS)
    check_decoded(swapped, rows[::-1], 5, what="greedy_decode of the same two sources in the other order",
                  hint="row b of the output must come from row b of the source")


@given(batch=batch_sizes, max_len=st.integers(1, 6), seed=seeds)
def test_greedy_runs_to_max_len_when_eos_never_comes(impl, batch, max_len, seed):
    toy = MarkovToy.random(seed, vocab_size=6, allowed=[A, B, 5, EOS], eos_bias=-80.0)
    src, mask = padded_source(batch, 3, seed)
    actual = impl.decoding.greedy_decode(toy, src, mask, max_len, BOS, EOS)
    rows, _ = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    check(all(len(r) == max_len for r in rows), "oracle: </s> should be out of reach")
    check_decoded(actual, rows, max_len, what=f"greedy_decode when </s> never comes (max_len={max_len})",
                  hint="stop after max_len generated tokens (the leading <s> does not count)")


def test_greedy_stops_once_every_row_has_ended(impl):
    """L is the length of the longest row: no trailing all-<pad> columns up to max_len."""
    hint = "break out of the loop as soon as every row has produced </s>"
    toy = MarkovToy.random(5, vocab_size=6, eos_bias=80.0)  # </s> first, in every row
    src, mask = padded_source(3, 4, 7)
    actual = impl.decoding.greedy_decode(toy, src, mask, 9, BOS, EOS)
    check_decoded(actual, [[EOS]] * 3, 9, what="greedy_decode when every row produces </s> at the first step")
    check(actual.shape[1] == 1,
          f"greedy_decode when every row produces </s> at the first step (max_len=9): expected shape (3, 1), "
          f"got {tuple(actual.shape)}: likely bug — the loop does not stop once every row has ended", hint)
    toy = oracle.two_context_toy()
    src = torch.tensor([[4, 7, 0], [3, 0, 0]])  # rows end after 2 and 3 tokens
    actual = impl.decoding.greedy_decode(toy, src, (src != PAD).unsqueeze(1), 9, BOS, EOS)
    check_decoded(actual, [oracle.TWO_CONTEXT_EVEN, oracle.TWO_CONTEXT_ODD], 9,
                  what="greedy_decode of two rows that end after 2 and 3 tokens (max_len=9)")
    check(actual.shape[1] == 3,
          f"greedy_decode of two rows that end after 2 and 3 tokens (max_len=9): expected shape (2, 3), "
          f"got {tuple(actual.shape)}: likely bug — the loop does not stop once every row has ended", hint)


@given(batch=batch_sizes, src_len=st.integers(1, 5), seed=seeds)
def test_greedy_rows_are_independent(impl, batch, src_len, seed):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6, eos_bias=1.0)
    src, mask = padded_source(batch, src_len, seed)
    together = impl.decoding.greedy_decode(toy, src, mask, 5, BOS, EOS)
    rows, margin = oracle.greedy_rows(toy, src, mask, 5, BOS, EOS)
    assume(margin > MARGIN)
    check_layout(together, batch, 5, "greedy_decode of a batch")
    for b in range(batch):
        real = int(mask[b, 0].sum())
        alone = impl.decoding.greedy_decode(toy, src[b : b + 1, :real], mask[b : b + 1, :, :real], 5, BOS, EOS)
        check_layout(alone, 1, 5, f"greedy_decode of row {b} alone")
        assert_equal(
            oracle.strip_trailing_pad(together[b : b + 1], PAD), oracle.strip_trailing_pad(alone, PAD),
            what=f"row {b} decoded in a batch of {batch} (padded source) vs alone (source without padding)",
            hint="rows must not influence each other; pass src_mask so that source padding is ignored",
        )


# --- beam search ----------------------------------------------------------------------------------

@given(batch=batch_sizes, max_len=st.integers(1, 5), seed=seeds, dtype=st.sampled_from(DTYPE_NAMES),
       alpha=st.sampled_from([0.0, 0.6, 1.0]))
def test_beam_size_one_equals_greedy(impl, batch, max_len, seed, dtype, alpha):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6, eos_bias=1.0, dtype=dtype)
    src, mask = padded_source(batch, 4, seed)
    actual = impl.decoding.beam_search(toy, src, mask, max_len, BOS, EOS, beam_size=1, length_penalty=alpha)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    assume(margin > MARGIN)
    check_decoded(actual, rows, max_len,
                  what=f"beam_search(beam_size=1, length_penalty={alpha}) on a random {dtype} model",
                  hint="with one beam, every step keeps the single most probable continuation: greedy decoding",
                  likely_bugs=greedy_bugs(toy, src, mask, max_len, rows))


def test_beam_search_beats_greedy_on_a_trap(impl):
    toy = oracle.greedy_trap_toy()
    src = torch.tensor([[5, 6], [7, 0]])
    mask = (src != PAD).unsqueeze(1)
    for beam_size in (2, 4):
        actual = impl.decoding.beam_search(toy, src, mask, 4, BOS, EOS, beam_size=beam_size)
        check_decoded(
            actual, [oracle.GREEDY_TRAP_BEST] * 2, 4,
            what=f"beam_search(beam_size={beam_size}) where greedy's first choice A (0.5) leads to a poor "
                 "continuation and B (0.4) to </s> with 0.9",
            hint="rank the candidates of all beams of a row together by total log-probability; at the first step "
                 "only one beam is live (give the others -inf), or the beam fills with copies of A",
            likely_bugs={
                "beam search returned the greedy answer [A, </s>]: the beam collapsed onto one hypothesis (copies "
                "of the first step's best token, or each beam ranked on its own)":
                    oracle.layout([oracle.GREEDY_TRAP_GREEDY] * 2, PAD),
            },
        )


def test_length_penalty_changes_the_winner(impl):
    toy = oracle.length_penalty_toy()
    src = torch.tensor([[5, 6, 7]])
    mask = (src != PAD).unsqueeze(1)
    long_, short = oracle.LENGTH_PENALTY_LONG, oracle.LENGTH_PENALTY_SHORT
    actual = impl.decoding.beam_search(toy, src, mask, 4, BOS, EOS, beam_size=4, length_penalty=0.6)
    check_decoded(
        actual, [long_], 4,
        what="beam_search(length_penalty=0.6): [</s>] has log P -0.693, [A, B, C, </s>] has -0.847",
        hint="pick the final hypothesis by log P / ((5 + |y|) / 6) ** alpha, |y| counting </s>: "
             "-0.693 / 1 < -0.847 / 1.5 ** 0.6",
        likely_bugs={
            "no length normalisation: the final choice uses the raw log-probability":
                oracle.layout([short], PAD),
        },
    )
    actual = impl.decoding.beam_search(toy, src, mask, 4, BOS, EOS, beam_size=4, length_penalty=0.0)
    check_decoded(actual, [short], 4, what="beam_search(length_penalty=0.0) on the same model",
                  hint="with alpha = 0 the penalty is 1: the highest raw log-probability wins",
                  likely_bugs={"the length penalty is applied even with alpha = 0": oracle.layout([long_], PAD)})


def small_toy(kind, seed, real_tokens, dtype):
    """A random toy over 32 ids of which only </s> and `real_tokens` ids (3, 4, ...) can occur."""
    allowed = [EOS] + list(range(3, 3 + real_tokens))
    if kind == "markov":
        return MarkovToy.random(seed, 32, allowed=allowed, scale=2.0, dtype=dtype), allowed
    if kind == "source":
        return SourceMarkovToy.random(seed, 3, 32, allowed=allowed, scale=2.0, dtype=dtype), allowed
    return PrefixToy.random(seed, 32, 9, d_model=6, allowed=allowed, scale=1.5, dtype=dtype), allowed


@st.composite
def exhaustive_settings(draw):
    real_tokens = draw(st.integers(1, 3))
    max_len = draw(st.integers(1, {1: 4, 2: 3, 3: 2}[real_tokens]))
    return real_tokens, max_len


@given(kind=st.sampled_from(["markov", "source", "prefix"]), settings=exhaustive_settings(), batch=batch_sizes,
       seed=seeds, alpha=st.sampled_from([0.0, 0.6, 1.0]), dtype=st.sampled_from(DTYPE_NAMES))
def test_wide_beam_returns_the_exact_optimum(impl, kind, settings, batch, seed, alpha, dtype):
    real_tokens, max_len = settings
    toy, allowed = small_toy(kind, seed, real_tokens, dtype)
    src, mask = padded_source(batch, 3, seed)
    count = oracle.hypothesis_count(max_len, real_tokens)
    actual = impl.decoding.beam_search(toy, src, mask, max_len, BOS, EOS, beam_size=count, length_penalty=alpha)
    rows, margin, enumerated = oracle.brute_force_best(toy, src, mask, max_len, BOS, EOS, alpha, allowed)
    check(enumerated == count, "oracle: hypothesis count")
    assume(margin > MARGIN)
    raw_rows, _, _ = oracle.brute_force_best(toy, src, mask, max_len, BOS, EOS, 0.0, allowed)
    bugs = {}
    if raw_rows != rows:
        bugs["no length normalisation: the final choice uses the raw log-probability"] = oracle.layout(raw_rows, PAD)
    check_decoded(
        actual, rows, max_len,
        what=f"beam_search(beam_size={count}, length_penalty={alpha}) on a random {kind} toy with "
             f"{real_tokens + 1} possible tokens and max_len={max_len}: a beam this wide keeps every hypothesis, "
             "so it must return the best of all of them",
        hint="score = log P / ((5 + |y|) / 6) ** alpha over the hypotheses that produced </s> (|y| counts it) "
             "and those still open at max_len (|y| = max_len)",
        likely_bugs=bugs,
    )


def test_open_hypotheses_compete_at_max_len(impl):
    toy = oracle.open_hypothesis_toy()
    src = torch.tensor([[3, 4]])
    mask = (src != PAD).unsqueeze(1)
    actual = impl.decoding.beam_search(toy, src, mask, 3, BOS, EOS, beam_size=4, length_penalty=0.6)
    check_decoded(
        actual, [oracle.OPEN_HYPOTHESIS_BEST], 3,
        what="beam_search with max_len=3 where [A, A, A] (P = 0.73) has not ended when max_len runs out",
        hint="hypotheses still open after max_len steps compete with the ended ones (|y| = max_len)",
        likely_bugs={
            "hypotheses still open at max_len are dropped: only those with </s> compete":
                oracle.layout([oracle.OPEN_HYPOTHESIS_BEST_ENDED], PAD),
        },
    )


@given(beam_size=st.sampled_from([1, 2, 4]), dtype=st.sampled_from(DTYPE_NAMES))
def test_beam_output_layout(impl, beam_size, dtype):
    toy = oracle.two_context_toy(dtype)
    src = torch.tensor([[4, 7, 0], [3, 0, 0], [6, 0, 0]])
    mask = (src != PAD).unsqueeze(1)
    rows = [oracle.TWO_CONTEXT_EVEN, oracle.TWO_CONTEXT_ODD, oracle.TWO_CONTEXT_EVEN]
    actual = impl.decoding.beam_search(toy, src, mask, 5, BOS, EOS, beam_size=beam_size)
    check_decoded(
        actual, rows, 5, what=f"beam_search(beam_size={beam_size}) layout for rows ending at different steps",
        hint="(B, L) long without the leading <s>; <pad> after each row's </s>; row b from source row b (expand "
             "memory and src_mask to B*K rows with repeat_interleave, not repeat, so hypothesis b*K+k belongs to row b)",
        likely_bugs={
            "the leading <s> is part of the output (return the generated tokens only)":
                oracle.with_bos(oracle.layout(rows, PAD), BOS),
            "every row got the translation of an even source: the memory is ignored or the rows are mixed up":
                oracle.layout([oracle.TWO_CONTEXT_EVEN] * 3, PAD),
        },
    )
