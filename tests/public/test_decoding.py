"""Part `decoding`: greedy_decode and beam_search (paper §6.1: beam size 4, length penalty
α = 0.6, Wu et al. 2016).

The models are trusted toys (grader/runtime/toys.py) whose next-token distributions are
known, so the expected tokens come from a naive one-row-at-a-time loop or from enumerating
every hypothesis (tests/support/oracles/decoding.py). Output layout of both decoders: (B, L)
long, no leading <s>, <pad> after </s>, L <= max_len. Trailing all-<pad> columns are ignored.

Most toys are causal whatever masks they get; ``AttentionToy`` (two or more self-attention
layers that apply ``tgt_mask`` and ``src_mask``) checks that decoding passes the causal mask
and the source mask: its output must agree with teacher forcing under the causal mask.
Every ``beam_search`` call respects the contract's ``1 <= beam_size <= vocabulary size``.
"""

import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from grader.i18n import _
from grader.runtime.toys import AttentionToy, MarkovToy, PrefixToy, SourceMarkovToy
from tests.support.checks import assert_equal, check
from tests.support.oracles import decoding as oracle
from tests.support.oracles.decoding import BOS, EOS, PAD, A, B
from tests.support.strategies import batch_sizes, int_tensor, lengths_with_padding, seeds

DTYPE_NAMES = ("float32", "float64")
MARGIN = 1e-4  # skip random models whose best and second-best choices are closer than this


def padded_source(batch, length, seed, vocab=9):
    """(B, T) source tokens in [3, vocab) with right padding, and the (B, 1, T) mask."""
    src = int_tensor((batch, length), seed, 3, vocab)
    real = torch.tensor(lengths_with_padding(batch, length, seed + 1))
    src[torch.arange(length)[None, :] >= real[:, None]] = PAD
    return src, (src != PAD).unsqueeze(1)


def check_layout(actual, batch, max_len, case):
    """A ``(B, L)`` tensor; ``case`` describes the call."""
    check(
        isinstance(actual, torch.Tensor),
        _("the output is a {type}, expected a torch.Tensor", type=type(actual).__name__),
        case=case,
    )
    check(
        actual.dim() == 2 and actual.shape[0] == batch,
        _("the output has shape {shape}, expected (B={batch}, L)", shape=tuple(actual.shape), batch=batch),
        _("one row per source sentence, one column per generated token"),
        case=case,
    )


def run_beam_search(impl, model, src, src_mask, max_len, bos_id, eos_id, **options):
    """``impl.decoding.beam_search`` on a toy, after checking the contract's precondition
    ``1 <= beam_size <= vocabulary size`` (a top-k over the vocabulary per hypothesis is a
    valid design that needs it)."""
    beam_size = options.get("beam_size", 4)
    check(
        1 <= beam_size <= model.generator.out_features,
        _("test setup: beam_size must be between 1 and the vocabulary size"),
    )
    return impl.decoding.beam_search(model, src, src_mask, max_len, bos_id, eos_id, **options)


def same_tokens(actual, expected) -> bool:
    return actual.dtype == expected.dtype and actual.shape == expected.shape and bool(torch.equal(actual, expected))


def check_decoded(actual, expected_rows, max_len, *, what, case, hint="", likely_bugs=None):
    """The tokens (trailing all-pad columns ignored), then the dtype, then L <= max_len.

    ``likely_bugs``: ``{bug: (B, L) tokens}``, or a function returning it (called only when
    the tokens are wrong, so that costly bug signatures cost nothing on a correct decoder)."""
    check_layout(actual, len(expected_rows), max_len, case)
    expected = oracle.layout(expected_rows, PAD)
    got = oracle.strip_trailing_pad(actual, PAD)
    if not same_tokens(got, expected):
        bugs = likely_bugs() if callable(likely_bugs) else likely_bugs
        bugs = {text: oracle.strip_trailing_pad(t, PAD) for text, t in (bugs or {}).items()}
        assert_equal(got, expected, what=what, case=case, hint=hint, likely_bugs=bugs)
    check(
        actual.shape[1] <= max_len,
        _("the output has {columns} columns, more than max_len={max_len}", columns=actual.shape[1], max_len=max_len),
        _("generate at most max_len tokens and do not return the leading <s>"),
        case=case,
    )


GREEDY_OUTPUT = _("greedy_decode output")
BEAM_OUTPUT = _("beam_search output")
NO_STOP_ONCE_ENDED = _("the loop does not stop once every row has ended")
NO_LENGTH_NORMALISATION = _("no length normalisation: the final choice uses the raw log-probability")


NO_CAUSAL_MASK = _("decoding without the causal (target) mask")
DECODE_WITHOUT_SRC_MASK = _("model.decode gets no src_mask: the cross-attention reads the source padding")
ENCODE_WITHOUT_SRC_MASK = _("model.encode gets no src_mask: the encoder reads the source padding")
NO_SRC_MASK = _("src_mask is passed neither to model.encode nor to model.decode: the source padding is read")
ROWS_MIX = _("the rows of a batch mix: each row is right when decoded alone, wrong in a batch")
MASKS_HINT = _(
    "decode the prefix under causal_mask(t) at every step even though only the last position is read: "
    "with two or more decoder layers the earlier positions would see the later tokens, and the last "
    "position reads them in the next layer; pass src_mask to both model.encode and model.decode"
)
ROWS_MIX_HINT = _(
    "expand memory and src_mask to B*K rows with repeat_interleave (not repeat), so that hypothesis "
    "b*K+k reads the memory and the source mask of row b, and reorder hypotheses within their row"
)
# oracle flags: what a decoder does that passes None instead of that mask
FORGOTTEN_MASKS = {
    NO_CAUSAL_MASK: dict(causal_mask=False),
    DECODE_WITHOUT_SRC_MASK: dict(decode_src_mask=False),
    ENCODE_WITHOUT_SRC_MASK: dict(encode_src_mask=False),
    NO_SRC_MASK: dict(encode_src_mask=False, decode_src_mask=False),
}


def greedy_decoder(impl):
    return lambda toy, src, mask, max_len: impl.decoding.greedy_decode(toy, src, mask, max_len, BOS, EOS)


def beam_one_decoder(impl):
    return lambda toy, src, mask, max_len: run_beam_search(impl, toy, src, mask, max_len, BOS, EOS, beam_size=1)


def forgotten_mask(decoder):
    """Which mask ``decoder`` (``decoder(toy, src, mask, max_len)``: greedy decoding or a beam
    of one) forgets, judged on ``oracle.mask_probe()``, where each forgotten mask gives other
    tokens: a key of ``FORGOTTEN_MASKS``, or None. Tokens that merely happen to equal a
    forgotten mask's on a test's own (often short) example are not enough to name the bug."""
    toy, src, mask, max_len = oracle.mask_probe()
    try:
        got = oracle.strip_trailing_pad(decoder(toy, src, mask, max_len), PAD)
    except Exception:
        return None
    for bug, flags in FORGOTTEN_MASKS.items():
        rows, _margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS, **flags)
        if same_tokens(got, oracle.layout(rows, PAD)):
            return bug
    return None


def mask_bugs(decoder, rows):
    """``{bug: tokens}`` for the mask that ``decoder`` forgets (see ``forgotten_mask``), with
    ``rows(**flags)`` the tokens it then returns on the test's example; ``{}`` when it
    forgets none or the model does not accept ``None`` (the student's Transformer might not)."""
    if decoder is None or (bug := forgotten_mask(decoder)) is None:
        return {}
    try:
        return {bug: rows(**FORGOTTEN_MASKS[bug])}
    except Exception:
        return {}


def greedy_mask_bugs(model, src, mask, max_len, decoder):
    """What greedy decoding (or a beam of one) returns when it forgets the mask it forgets."""
    return mask_bugs(
        decoder, lambda **flags: oracle.layout(oracle.greedy_rows(model, src, mask, max_len, BOS, EOS, **flags)[0], PAD)
    )


def wide_beam_bugs(model, src, mask, max_len, alpha, allowed, decoder):
    """What a beam wide enough to keep every hypothesis returns when it skips the length
    normalisation or forgets a mask (``decoder``: the same beam search with ``beam_size=1``)."""

    def rows(alpha=alpha, **flags):
        return oracle.layout(
            oracle.brute_force_best(model, src, mask, max_len, BOS, EOS, alpha, allowed, **flags)[0], PAD
        )

    return {NO_LENGTH_NORMALISATION: rows(alpha=0.0), **mask_bugs(decoder, rows)}


def greedy_bugs(toy, src, mask, max_len, rows, decoder=None):
    """Signatures of greedy-decoding bugs; ``decoder`` (see ``forgotten_mask``) adds the mask
    it forgets, if any."""
    no_stop = oracle.greedy_rows_ignoring_eos(toy, src, mask, max_len, BOS)
    first_position = oracle.greedy_rows_first_position(toy, src, mask, max_len, BOS, EOS)
    expected = oracle.layout(rows, PAD)
    return {
        **greedy_mask_bugs(toy, src, mask, max_len, decoder),
        _("the leading <s> is part of the output (return the generated tokens only)"): oracle.with_bos(expected, BOS),
        _(
            "finished rows keep getting the argmax token: every position after a row's </s> must be <pad>"
        ): oracle.bug_no_stop_until_all_done(no_stop, rows, PAD),
        _("decoding does not stop at </s>: it runs to max_len and writes argmax tokens after </s>"): oracle.layout(
            no_stop, PAD
        ),
        _(
            "the next token is read from the first position's logits; it is the argmax of the LAST position's "
            "logits (hidden[:, -1])"
        ): oracle.layout(first_position, PAD),
    }


# --- greedy ---------------------------------------------------------------------------------------


@given(
    batch=batch_sizes,
    src_len=st.integers(1, 5),
    max_len=st.integers(1, 6),
    seed=seeds,
    dtype=st.sampled_from(DTYPE_NAMES),
    eos_bias=st.sampled_from([0.0, 1.5, 3.0]),
)
def test_greedy_matches_naive_loop(impl, batch, src_len, max_len, seed, dtype, eos_bias):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6, eos_bias=eos_bias, dtype=dtype)
    src, mask = padded_source(batch, src_len, seed)
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
        hint=_(
            "encode once; each step decode the whole prefix <s> y_1..y_t under causal_mask(t+1), take the "
            "argmax of the LAST position's logits; <pad> after a row's </s>; stop when all rows ended"
        ),
        likely_bugs=lambda: greedy_bugs(toy, src, mask, max_len, rows, greedy_decoder(impl)),
    )


def test_greedy_pads_finished_rows_and_reads_the_source(impl):
    toy = oracle.two_context_toy()
    src = torch.tensor([[4, 7, 0], [3, 0, 0]])  # first token even -> [A, </s>], odd -> [B, C, </s>]
    mask = (src != PAD).unsqueeze(1)
    rows = [oracle.TWO_CONTEXT_EVEN, oracle.TWO_CONTEXT_ODD]
    actual = impl.decoding.greedy_decode(toy, src, mask, 5, BOS, EOS)
    check_decoded(
        actual,
        rows,
        5,
        what=GREEDY_OUTPUT,
        case=_(
            "greedy_decode(max_len=5) of two sources whose translations end at different steps: src {src}",
            src=src.tolist(),
        ),
        hint=_("row 0 ends after 2 tokens, row 1 after 3: row 0 must hold <pad> after its </s>"),
        likely_bugs={
            **greedy_bugs(toy, src, mask, 5, rows),
            _("the source is ignored (both rows decoded from the same memory)"): oracle.layout(
                [oracle.TWO_CONTEXT_EVEN] * 2, PAD
            ),
        },
    )
    swapped = impl.decoding.greedy_decode(toy, src.flip(0), mask.flip(0), 5, BOS, EOS)
    check_decoded(
        swapped,
        rows[::-1],
        5,
        what=GREEDY_OUTPUT,
        case=_(
            "greedy_decode(max_len=5) of the same two sources in the other order: src {src}", src=src.flip(0).tolist()
        ),
        hint=_("row b of the output must come from row b of the source"),
    )


@given(batch=batch_sizes, max_len=st.integers(1, 6), seed=seeds)
def test_greedy_runs_to_max_len_when_eos_never_comes(impl, batch, max_len, seed):
    toy = MarkovToy.random(seed, vocab_size=6, allowed=[A, B, 5, EOS], eos_bias=-80.0)
    src, mask = padded_source(batch, 3, seed)
    actual = impl.decoding.greedy_decode(toy, src, mask, max_len, BOS, EOS)
    rows, _margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    check(all(len(r) == max_len for r in rows), _("test setup: </s> should be out of reach"))
    check_decoded(
        actual,
        rows,
        max_len,
        what=GREEDY_OUTPUT,
        case=_(
            "greedy_decode(max_len={max_len}) on a model that never produces </s> (B={batch})",
            max_len=max_len,
            batch=batch,
        ),
        hint=_("stop after max_len generated tokens (the leading <s> does not count)"),
    )


def test_greedy_stops_once_every_row_has_ended(impl):
    """L is the length of the longest row: no trailing all-<pad> columns up to max_len."""

    def hint(actual, expected):
        return _(
            "the output has shape {actual}, expected {expected}: break out of the loop as soon as every row "
            "has produced </s>",
            actual=tuple(actual.shape),
            expected=expected,
        )

    toy = MarkovToy.random(5, vocab_size=6, eos_bias=80.0)  # </s> first, in every row
    src, mask = padded_source(3, 4, 7)
    actual = impl.decoding.greedy_decode(toy, src, mask, 9, BOS, EOS)
    case = _("greedy_decode(max_len=9) where every row produces </s> at the first step (B=3)")
    check_decoded(actual, [[EOS]] * 3, 9, what=GREEDY_OUTPUT, case=case)
    check(actual.shape[1] == 1, NO_STOP_ONCE_ENDED, hint(actual, (3, 1)), case=case, likely_bug=True)
    toy = oracle.two_context_toy()
    src = torch.tensor([[4, 7, 0], [3, 0, 0]])  # rows end after 2 and 3 tokens
    actual = impl.decoding.greedy_decode(toy, src, (src != PAD).unsqueeze(1), 9, BOS, EOS)
    case = _("greedy_decode(max_len=9) of two rows that end after 2 and 3 tokens")
    check_decoded(actual, [oracle.TWO_CONTEXT_EVEN, oracle.TWO_CONTEXT_ODD], 9, what=GREEDY_OUTPUT, case=case)
    check(actual.shape[1] == 3, NO_STOP_ONCE_ENDED, hint(actual, (2, 3)), case=case, likely_bug=True)


@given(batch=batch_sizes, src_len=st.integers(1, 5), seed=seeds)
def test_greedy_rows_are_independent(impl, batch, src_len, seed):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6, eos_bias=1.0)
    src, mask = padded_source(batch, src_len, seed)
    together = impl.decoding.greedy_decode(toy, src, mask, 5, BOS, EOS)
    rows, margin = oracle.greedy_rows(toy, src, mask, 5, BOS, EOS)
    assume(margin > MARGIN)
    check_layout(together, batch, 5, _("greedy_decode(max_len=5) of a batch of {batch} padded sources", batch=batch))
    for b in range(batch):
        real = int(mask[b, 0].sum())
        alone = impl.decoding.greedy_decode(toy, src[b : b + 1, :real], mask[b : b + 1, :, :real], 5, BOS, EOS)
        check_layout(alone, 1, 5, _("greedy_decode(max_len=5) of row {b} alone", b=b))
        in_batch, alone = oracle.strip_trailing_pad(together[b : b + 1], PAD), oracle.strip_trailing_pad(alone, PAD)
        if same_tokens(in_batch, alone):
            continue
        if same_tokens(alone, oracle.layout(rows[b : b + 1], PAD)):
            signatures = greedy_mask_bugs(toy, src, mask, 5, greedy_decoder(impl))
            bugs = {text: oracle.strip_trailing_pad(t[b : b + 1], PAD) for text, t in signatures.items()}
        else:
            bugs = {}
        assert_equal(
            in_batch,
            alone,
            what=_("row {b} decoded in a batch vs alone", b=b),
            case=_(
                "greedy_decode(max_len=5): row {b} of a batch of {batch} (padded source) vs the same row alone "
                "(source without padding)",
                b=b,
                batch=batch,
            ),
            hint=_("rows must not influence each other; pass src_mask so that source padding is ignored"),
            likely_bugs=bugs,
        )


def check_agrees_with_teacher_forcing(actual, model, src, mask, *, what, case, likely_bugs):
    """Every token of every row of ``actual`` up to its ``</s>`` is the argmax of the logits
    that ``model`` gives after the row's own prefix, decoded in one teacher-forced pass under
    the causal mask (what follows ``</s>`` is left to ``check_decoded``)."""
    got = oracle.strip_trailing_pad(actual, PAD)
    if got.dtype != torch.long or (
        got.numel() and (int(got.min()) < 0 or int(got.max()) >= model.generator.out_features)
    ):
        return  # not token ids of this model: check_decoded says so
    forced = oracle.teacher_forced_argmax(model, src, mask, oracle.generated_rows(got, EOS, PAD), BOS)
    expected = got.clone()
    for b, row in enumerate(forced):
        expected[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    if not same_tokens(got, expected):
        bugs = {text: oracle.strip_trailing_pad(t, PAD) for text, t in likely_bugs().items()}
        assert_equal(got, expected, what=what, case=case, hint=MASKS_HINT, likely_bugs=bugs)


TEACHER_FORCED_GREEDY = _("greedy_decode output vs the teacher-forced argmax")
TEACHER_FORCED_BEAM_ONE = _("beam_search(beam_size=1) output vs the teacher-forced argmax")


def check_greedy_and_beam_one_agree_with_teacher_forcing(impl, toy, src, mask, max_len, rows, case_greedy, case_beam):
    """``greedy_decode`` and ``beam_search(beam_size=1)``: each generated token is the argmax
    after its own prefix (teacher-forced, causal mask), then the whole output is ``rows``."""
    for what, case, decoder in (
        (TEACHER_FORCED_GREEDY, case_greedy, greedy_decoder(impl)),
        (TEACHER_FORCED_BEAM_ONE, case_beam, beam_one_decoder(impl)),
    ):
        actual = decoder(toy, src, mask, max_len)

        def bugs(decoder=decoder):
            return greedy_bugs(toy, src, mask, max_len, rows, decoder)

        check_layout(actual, src.shape[0], max_len, case)
        check_agrees_with_teacher_forcing(actual, toy, src, mask, what=what, case=case, likely_bugs=bugs)
        check_decoded(actual, rows, max_len, what=what, case=case, hint=MASKS_HINT, likely_bugs=bugs)


@given(
    batch=batch_sizes,
    src_len=st.integers(1, 5),
    max_len=st.integers(2, 6),
    seed=seeds,
    dtype=st.sampled_from(DTYPE_NAMES),
    eos_bias=st.sampled_from([-1.0, 0.0, 1.0]),
)
def test_greedy_agrees_with_teacher_forcing(impl, batch, src_len, max_len, seed, dtype, eos_bias):
    # A two-layer toy whose self-attention applies tgt_mask: decoding without the causal mask
    # (or without src_mask, with padded sources) chooses other tokens. (No docstring: its first
    # line would become the check's name.)
    toy = AttentionToy.random(
        seed, vocab_size=7, src_vocab_size=9, d_model=6, num_layers=2, eos_bias=eos_bias, dtype=dtype
    )
    src, mask = padded_source(batch, src_len, seed)
    rows, margin = oracle.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    assume(margin > MARGIN)
    sizes = dict(max_len=max_len, dtype=dtype, batch=batch, src_len=src_len)
    check_greedy_and_beam_one_agree_with_teacher_forcing(
        impl,
        toy,
        src,
        mask,
        max_len,
        rows,
        _(
            "greedy_decode(max_len={max_len}) on a random two-layer {dtype} model whose self-attention uses tgt_mask "
            "(B={batch}, T_src={src_len}, padded sources)",
            **sizes,
        ),
        _(
            "beam_search(beam_size=1, max_len={max_len}) on a random two-layer {dtype} model whose self-attention "
            "uses tgt_mask (B={batch}, T_src={src_len}, padded sources)",
            **sizes,
        ),
    )


# --- beam search ----------------------------------------------------------------------------------


def rows_right_alone(impl, toy, src, mask, max_len, rows, options) -> bool:
    """Whether every row of the batch, decoded on its own (with the same padded source), gives
    its expected row."""
    for b in range(src.shape[0]):
        try:
            alone = run_beam_search(impl, toy, src[b : b + 1], mask[b : b + 1], max_len, BOS, EOS, **options)
            if not same_tokens(oracle.strip_trailing_pad(alone, PAD), oracle.layout(rows[b : b + 1], PAD)):
                return False
        except Exception:
            return False
    return True


def check_wide_beam_agrees_with_teacher_forcing(
    impl, toy, src, mask, max_len, alpha, allowed, real_tokens, *, layers, dtype
):
    """A beam wide enough to keep every hypothesis (a multiple of B, so that hypotheses expanded
    with repeat instead of repeat_interleave read another row's source mask from the first step)
    must return the best hypothesis scored under the causal mask, row by row."""
    batch, src_len = src.shape
    count = oracle.hypothesis_count(max_len, real_tokens)
    beam_size = -(-count // batch) * batch
    rows, margin, _count = oracle.brute_force_best(toy, src, mask, max_len, BOS, EOS, alpha, allowed)
    assume(margin > MARGIN)
    options = dict(beam_size=beam_size, length_penalty=alpha)
    actual = run_beam_search(impl, toy, src, mask, max_len, BOS, EOS, **options)
    check_beam_rows(
        impl,
        actual,
        toy,
        src,
        mask,
        max_len,
        rows,
        options,
        what=_("beam_search output vs the best hypothesis under teacher forcing"),
        case=_(
            "beam_search(beam_size={beam_size} >= {count} hypotheses, length_penalty={alpha}, max_len={max_len}) "
            "on a random {layers}-layer {dtype} model whose self-attention uses tgt_mask (B={batch}, T_src={src_len}, "
            "padded sources)",
            beam_size=beam_size,
            count=count,
            alpha=alpha,
            max_len=max_len,
            layers=layers,
            dtype=dtype,
            batch=batch,
            src_len=src_len,
        ),
        hint=_(
            "score = log P / ((5 + |y|) / 6) ** alpha with log P summed over the steps, each step decoding its "
            "prefix under causal_mask(t); src_mask goes to model.encode and model.decode"
        ),
        likely_bugs=lambda: wide_beam_bugs(toy, src, mask, max_len, alpha, allowed, beam_one_decoder(impl)),
    )


def check_beam_rows(impl, actual, toy, src, mask, max_len, rows, options, *, what, case, hint, likely_bugs=None):
    """``check_decoded`` for the ``beam_search(**options)`` output of a batch; when its tokens
    up to ``</s>`` are wrong while every row decoded alone is right, the bug is that the rows
    mix, whatever other bug the wrong tokens happen to look like. (Wrong tokens only after
    ``</s>`` can be a batch-only bug too: ended hypotheses extended while other rows go on.)"""
    check_layout(actual, len(rows), max_len, case)
    got = oracle.strip_trailing_pad(actual, PAD)
    if (
        src.shape[0] > 1
        and oracle.generated_rows(got, EOS, PAD) != rows
        and rows_right_alone(impl, toy, src, mask, max_len, rows, options)
    ):
        hint, likely_bugs = ROWS_MIX_HINT, {ROWS_MIX: got}  # names the bug for these very tokens
    check_decoded(actual, rows, max_len, what=what, case=case, hint=hint, likely_bugs=likely_bugs)


@given(
    batch=batch_sizes,
    max_len=st.integers(1, 5),
    seed=seeds,
    dtype=st.sampled_from(DTYPE_NAMES),
    alpha=st.sampled_from([0.0, 0.6, 1.0]),
)
def test_beam_size_one_equals_greedy(impl, batch, max_len, seed, dtype, alpha):
    toy = PrefixToy.random(seed, vocab_size=7, src_vocab_size=9, d_model=6, eos_bias=1.0, dtype=dtype)
    src, mask = padded_source(batch, 4, seed)
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


def test_beam_search_beats_greedy_on_a_trap(impl):
    toy = oracle.greedy_trap_toy()
    src = torch.tensor([[5, 6], [7, 0]])
    mask = (src != PAD).unsqueeze(1)
    for beam_size in (2, 4):
        actual = run_beam_search(impl, toy, src, mask, 4, BOS, EOS, beam_size=beam_size)
        check_decoded(
            actual,
            [oracle.GREEDY_TRAP_BEST] * 2,
            4,
            what=BEAM_OUTPUT,
            case=_(
                "beam_search(beam_size={beam_size}, max_len=4) where greedy's first choice A (0.5) leads to a "
                "poor continuation and B (0.4) to </s> with 0.9",
                beam_size=beam_size,
            ),
            hint=_(
                "rank the candidates of all beams of a row together by total log-probability; at the first step "
                "only one beam is live (give the others -inf), or the beam fills with copies of A"
            ),
            likely_bugs={
                _(
                    "beam search returned the greedy answer [A, </s>]: the beam collapsed onto one hypothesis (copies "
                    "of the first step's best token, or each beam ranked on its own)"
                ): oracle.layout([oracle.GREEDY_TRAP_GREEDY] * 2, PAD),
            },
        )


def test_length_penalty_changes_the_winner(impl):
    toy = oracle.length_penalty_toy()
    src = torch.tensor([[5, 6, 7]])
    mask = (src != PAD).unsqueeze(1)
    long_, short = oracle.LENGTH_PENALTY_LONG, oracle.LENGTH_PENALTY_SHORT
    actual = run_beam_search(impl, toy, src, mask, 4, BOS, EOS, beam_size=4, length_penalty=0.6)
    check_decoded(
        actual,
        [long_],
        4,
        what=BEAM_OUTPUT,
        case=_(
            "beam_search(beam_size=4, length_penalty=0.6, max_len=4): [</s>] has log P -0.693, [A, B, C, </s>] "
            "has -0.847"
        ),
        hint=_(
            "pick the final hypothesis by log P / ((5 + |y|) / 6) ** alpha, |y| counting </s>: "
            "-0.693 / 1 < -0.847 / 1.5 ** 0.6"
        ),
        likely_bugs={NO_LENGTH_NORMALISATION: oracle.layout([short], PAD)},
    )
    actual = run_beam_search(impl, toy, src, mask, 4, BOS, EOS, beam_size=4, length_penalty=0.0)
    check_decoded(
        actual,
        [short],
        4,
        what=BEAM_OUTPUT,
        case=_("beam_search(beam_size=4, length_penalty=0.0, max_len=4) on the same model"),
        hint=_("with alpha = 0 the penalty is 1: the highest raw log-probability wins"),
        likely_bugs={_("the length penalty is applied even with alpha = 0"): oracle.layout([long_], PAD)},
    )


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


@given(
    kind=st.sampled_from(["markov", "source", "prefix"]),
    settings=exhaustive_settings(),
    batch=batch_sizes,
    seed=seeds,
    alpha=st.sampled_from([0.0, 0.6, 1.0]),
    dtype=st.sampled_from(DTYPE_NAMES),
)
def test_wide_beam_returns_the_exact_optimum(impl, kind, settings, batch, seed, alpha, dtype):
    real_tokens, max_len = settings
    toy, allowed = small_toy(kind, seed, real_tokens, dtype)
    src, mask = padded_source(batch, 3, seed)
    count = oracle.hypothesis_count(max_len, real_tokens)
    actual = run_beam_search(impl, toy, src, mask, max_len, BOS, EOS, beam_size=count, length_penalty=alpha)
    rows, margin, enumerated = oracle.brute_force_best(toy, src, mask, max_len, BOS, EOS, alpha, allowed)
    check(enumerated == count, _("test setup: the hypothesis count is wrong"))
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
            "beam_search(beam_size={count}, length_penalty={alpha}, max_len={max_len}) on a random {kind} toy "
            "with {tokens} possible tokens (B={batch}): a beam this wide keeps every hypothesis, so it must "
            "return the best of all of them",
            count=count,
            alpha=alpha,
            max_len=max_len,
            kind=kind,
            tokens=real_tokens + 1,
            batch=batch,
        ),
        hint=_(
            "score = log P / ((5 + |y|) / 6) ** alpha over the hypotheses that produced </s> (|y| counts it) "
            "and those still open at max_len (|y| = max_len)"
        ),
        likely_bugs=lambda: wide_beam_bugs(toy, src, mask, max_len, alpha, allowed, beam_one_decoder(impl)),
    )


def test_open_hypotheses_compete_at_max_len(impl):
    toy = oracle.open_hypothesis_toy()
    src = torch.tensor([[3, 4]])
    mask = (src != PAD).unsqueeze(1)
    actual = run_beam_search(impl, toy, src, mask, 3, BOS, EOS, beam_size=4, length_penalty=0.6)
    check_decoded(
        actual,
        [oracle.OPEN_HYPOTHESIS_BEST],
        3,
        what=BEAM_OUTPUT,
        case=_(
            "beam_search(beam_size=4, length_penalty=0.6, max_len=3) where [A, A, A] (P = 0.73) has not ended "
            "when max_len runs out"
        ),
        hint=_("hypotheses still open after max_len steps compete with the ended ones (|y| = max_len)"),
        likely_bugs={
            _("hypotheses still open at max_len are dropped: only those with </s> compete"): oracle.layout(
                [oracle.OPEN_HYPOTHESIS_BEST_ENDED], PAD
            ),
        },
    )


@given(beam_size=st.sampled_from([1, 2, 4]), dtype=st.sampled_from(DTYPE_NAMES))
def test_beam_output_layout(impl, beam_size, dtype):
    toy = oracle.two_context_toy(dtype)
    src = torch.tensor([[4, 7, 0], [3, 0, 0], [6, 0, 0]])
    mask = (src != PAD).unsqueeze(1)
    rows = [oracle.TWO_CONTEXT_EVEN, oracle.TWO_CONTEXT_ODD, oracle.TWO_CONTEXT_EVEN]
    actual = run_beam_search(impl, toy, src, mask, 5, BOS, EOS, beam_size=beam_size)
    check_beam_rows(
        impl,
        actual,
        toy,
        src,
        mask,
        5,
        rows,
        dict(beam_size=beam_size),
        what=BEAM_OUTPUT,
        case=_(
            "beam_search(beam_size={beam_size}, max_len=5) of three rows that end at different steps ({dtype} model)",
            beam_size=beam_size,
            dtype=dtype,
        ),
        hint=_(
            "(B, L) long without the leading <s>; <pad> after each row's </s>; row b from source row b (expand "
            "memory and src_mask to B*K rows with repeat_interleave, not repeat, so hypothesis b*K+k belongs to "
            "row b)"
        ),
        likely_bugs={
            _("the leading <s> is part of the output (return the generated tokens only)"): oracle.with_bos(
                oracle.layout(rows, PAD), BOS
            ),
            _(
                "every row got the translation of an even source: the memory is ignored or the rows are mixed up"
            ): oracle.layout([oracle.TWO_CONTEXT_EVEN] * 3, PAD),
        },
    )


@given(
    settings=st.sampled_from([(2, 2), (2, 3), (3, 2)]),
    batch=st.integers(2, 3),
    src_len=st.integers(2, 5),
    seed=seeds,
    alpha=st.sampled_from([0.0, 0.6, 1.0]),
    dtype=st.sampled_from(DTYPE_NAMES),
)
def test_wide_beam_agrees_with_teacher_forcing(impl, settings, batch, src_len, seed, alpha, dtype):
    # The two-layer toy of test_greedy_agrees_with_teacher_forcing over 32 ids of which only
    # </s> and 2-3 others can occur (the causal mask matters little when every token is the
    # same), so that a beam can keep every hypothesis; its width is a multiple of B, so that
    # hypotheses expanded with repeat instead of repeat_interleave read another row's source
    # mask from the first step on.
    real_tokens, max_len = settings
    allowed = [EOS] + list(range(3, 3 + real_tokens))
    toy = AttentionToy.random(seed, 32, 9, d_model=6, num_layers=2, allowed=allowed, scale=1.5, dtype=dtype)
    src, mask = padded_source(batch, src_len, seed)
    check_wide_beam_agrees_with_teacher_forcing(
        impl, toy, src, mask, max_len, alpha, allowed, real_tokens, layers=2, dtype=dtype
    )
